//! `control.toml`: the control plane's configuration.
//!
//! ```toml
//! listen = "127.0.0.1:7420"
//! state_dir = "/var/lib/delta-control"
//! database_url = "postgres://delta@localhost/delta"   # default: SQLite in state_dir
//! # jwt_previous_secret_file = "/etc/delta/jwt-previous"  # during a key rotation only
//! node_api_secret_file = "/etc/delta/node-api-secret" # each node's API token is derived from it (enrolment prints it)
//! allow_registration = true                          # default false (`delta up`: true)
//! require_email_verification = true                  # with [smtp]: registration reveals no account
//! operators = ["ops@example.com"]                    # platform operators, by account email
//! max_tenants_per_user = 5
//! session_max_secs = 2592000                         # a login's refresh family: 30 days at most
//! node_heartbeat_timeout_secs = 15
//! redis_url = "redis://127.0.0.1:6379/"              # shared rate limits across replicas
//! run_output_ttl_secs = 86400
//! record_retention_secs = 7776000                    # leases, token requests, usage records: 90 days
//! audit_retention_secs = 31536000                    # message attempts: 365 days
//! drain_grace_secs = 30                              # SIGTERM: requests in flight get this long
//! bounty_fee_bps = 1500                              # the platform's fee on bounty payouts: 15 %
//! max_submission_bytes = 65536                       # largest bounty submission (JSON)
//! allow_private_webhook_urls = false                 # webhooks to loopback/private addresses (tests)
//! webhook_retry_base_ms = 1000                       # webhook retries wait 1, 2, 4, 8 x this
//! max_webhook_body_bytes = 262144                     # largest inbound webhook delivery
//! vault_key_file = "/etc/delta/vault-key"            # 32 bytes, mode 0600: tenants' secrets (none: 501)
//!
//! [templates]
//! operator_review = "first"  # none (default) | first | all: operators approve templates too
//!
//! [runs]                  # the durable run queue (`crate::dispatch`)
//! max_deliveries = 5      # failed deliveries before a run is dead
//! retry_base_ms = 1000    # retries wait about 1, 2, 4, ... x this (jittered)
//! retry_max_ms = 60000
//!
//! [quotas]                # per tenant; operators change them per tenant
//! component_bytes = 1073741824
//! messages_per_day = 1000
//! agents = 100
//! component_gc_grace_secs = 604800   # unused components deleted after 7 days
//!
//! [tiers]                 # monthly token allocation per tier (seed 000)
//! free = 1000
//! developer = 10000
//! team = 100000
//!
//! [auth_limits]          # login, registration, refresh (anonymous routes)
//! per_ip_per_min = 60
//! per_ip_burst = 20
//! lockout_after = 5       # failed logins of one account in a row
//! lockout_base_secs = 1   # then locked 1 s, 2 s, 4 s, ...
//! lockout_max_secs = 900
//!
//! [smtp]                # the control plane's own mail (`crate::mailer`)
//! host = "smtp.example.com"
//! from = "Delta <noreply@example.com>"
//!
//! [payments]            # where bounty escrow is held; see `crate::payments`
//! backend = "ledger"     # or "stripe", with [payments.stripe]
//!
//! [artifacts]           # bounty submission files; see `crate::bounties`
//! backend = "local"      # files under dir; or "s3", with [artifacts.s3]
//! dir = "/var/lib/delta/control/artifacts"   # default <state_dir>/artifacts
//! max_bytes = 10485760   # larger uploads answer 413
//! url_ttl_secs = 300     # signed download URLs expire after this
//! signing_key_file = "/etc/delta/artifact-key"   # default <state_dir>/artifact-key; share it between replicas
//!
//! # [artifacts.s3]       # with backend = "s3"
//! # endpoint = "https://s3.eu-central-1.amazonaws.com"   # http:// only on loopback
//! # bucket = "delta-artifacts"
//! # region = "eu-central-1"
//! # access_key_id = "AKIA..."                 # with secret_access_key_file, or
//! # secret_access_key_file = "/etc/delta/s3-secret"   # neither: AWS_* env vars
//!
//! [kv]                  # agents' durable key-value state (delta_kv::KvLimits), per agent
//! max_value_bytes = 65536
//! max_keys = 10000
//! max_total_bytes = 16777216
//!
//! [rate_limit]
//! per_key_per_sec = 50
//! per_key_burst = 100
//! per_tenant_per_sec = 200
//! per_tenant_burst = 400
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// Not valid TOML for this schema.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's account.
        message: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// Where the SQLite database, the JWT secret and components live.
    pub state_dir: PathBuf,
    /// `sqlite://...` or `postgres://...` (default: `<state_dir>/control.db`).
    pub database_url: Option<String>,
    /// File with the HMAC secret for access tokens (default: generated once
    /// into `<state_dir>/jwt-secret`, mode 0600).
    pub jwt_secret_file: Option<PathBuf>,
    /// During a rotation of that secret: the file with the previous one.
    /// Access tokens it signed (they name its key id) keep verifying until
    /// they expire (30 minutes); new ones are signed with the current
    /// secret. Remove it after that.
    pub jwt_previous_secret_file: Option<PathBuf>,
    /// File with the secret the control plane derives each node's API
    /// token from (at least 32 characters): it presents
    /// `nat_<HMAC-SHA256(secret, node id)>` to a node, whose own
    /// `token_file` holds that token (enrolment answers it). One node's
    /// token cannot call another. Nodes do not present it: each has its
    /// own credential (`delta nodes enroll`).
    pub node_api_secret_file: Option<PathBuf>,
    /// Whether anyone may register (default false: accounts come from
    /// `delta control --create-account`; `delta up` turns it on).
    pub allow_registration: bool,
    /// Registration answers 202 for every address and the account exists
    /// once the emailed token is presented (`crate::verification`), so
    /// registration reveals no account. Needs `[smtp]`. Default false;
    /// recommended whenever `allow_registration` is on in production.
    pub require_email_verification: bool,
    /// The relay for the control plane's own mail (`crate::mailer`).
    pub smtp: Option<crate::mailer::SmtpConfig>,
    /// Platform operators, by the email of their account: they alone set
    /// tiers, see the node fleet and are exempt from the tenant cap. An
    /// address on this list cannot be registered through the API (create
    /// it with `delta control --create-account`), so a stranger cannot
    /// claim it; list only addresses whose accounts you made.
    pub operators: Vec<String>,
    /// Most tenants a user may own (operators: no limit). Each registration
    /// makes one.
    pub max_tenants_per_user: u32,
    /// Absolute lifetime of a session: a refresh family older than this is
    /// refused (and revoked) however recently it was used (default 30
    /// days), so a stolen refresh token kept alive by its thief dies too.
    pub session_max_secs: u64,
    /// Accept nodes at plain `http://` URLs off loopback (default false:
    /// the control plane carries the node API token to them, so https).
    pub allow_plain_http_nodes: bool,
    /// A node without a heartbeat for this long is marked down.
    pub node_heartbeat_timeout_secs: u64,
    /// Largest JSON body, bytes.
    pub max_body_bytes: u64,
    /// Largest component upload, bytes.
    pub max_component_bytes: u64,
    /// Monthly token allocation per tier name (seed 000).
    pub tiers: BTreeMap<String, u64>,
    /// The tier a user's budget starts on.
    pub default_tier: String,
    /// Lifetime of a node's budget lease; an unreturned lease goes back to
    /// the budget when it expires.
    pub lease_ttl_secs: u64,
    /// A pending token request not decided within this expires.
    pub token_request_ttl_secs: u64,
    /// Run outputs are hard-deleted this long after the run finished.
    pub run_output_ttl_secs: u64,
    /// A stored `Idempotency-Key` response is replayed for this long.
    pub idempotency_ttl_secs: u64,
    /// Finished leases, decided token requests, usage records and usage
    /// batches are deleted this long after they ended (default 90 days).
    /// Usage records finished longer ago than this are refused at ingestion:
    /// their run ids may no longer be there to deduplicate them. Daily usage
    /// aggregates and budget entries are kept.
    pub record_retention_secs: u64,
    /// Message attempts (the audit log, with recipients) are deleted this
    /// long after they were made (default 365 days).
    pub audit_retention_secs: u64,
    /// On SIGTERM, requests in flight (log streams included) get this long
    /// to finish before their connections are closed (default 30).
    pub drain_grace_secs: u64,
    /// Redis for rate limits shared by several control-plane replicas (none:
    /// in-process limits).
    pub redis_url: Option<String>,
    /// Request rate limits.
    pub rate_limit: RateLimitConfig,
    /// Limits of the anonymous routes (see `guard`).
    pub auth_limits: AuthLimitsConfig,
    /// The platform's fee on a bounty's payout, in basis points of the
    /// reward (default 1500: 15 %), booked to the currency's `platform`
    /// account; at most 10,000.
    pub bounty_fee_bps: u32,
    /// Where bounty escrow is held (`[payments]`: the ledger, or Stripe).
    pub payments: crate::payments::PaymentsConfig,
    /// Largest bounty submission payload, bytes of its JSON (default 64 KiB).
    pub max_submission_bytes: u64,
    /// Bounty submission artifacts (`[artifacts]`: store, size cap, signed
    /// URLs; see `crate::bounties` `artifacts`).
    pub artifacts: crate::bounties::ArtifactsConfig,
    /// Deliver outbound webhooks to URLs that resolve to loopback, private,
    /// link-local or otherwise non-public addresses (default false: such
    /// URLs are refused at registration and at every delivery, so a tenant
    /// cannot make the control plane call into its own network). Tests and
    /// single-machine setups turn it on.
    pub allow_private_webhook_urls: bool,
    /// The first retry delay of an outbound webhook (default 1000 ms); the
    /// next ones double it (1, 2, 4, 8 s), and the fifth failed try
    /// dead-letters the delivery. Tests shorten it; at least 10.
    pub webhook_retry_base_ms: u64,
    /// Largest inbound webhook delivery (`POST /v1/hooks/{id}`), bytes
    /// (default 256 KiB); larger ones answer 413 and start nothing.
    pub max_webhook_body_bytes: u64,
    /// Bounds of each agent's key-value state (`[kv]`).
    pub kv: delta_kv::KvLimits,
    /// File holding the 32-byte key that seals tenants' secrets (AES-256-GCM;
    /// mode 0600). None: the secret routes answer 501 `not_configured` and
    /// agents' HTTP calls cannot use secrets.
    pub vault_key_file: Option<PathBuf>,
    /// Template review (`[templates]`).
    pub templates: TemplatesConfig,
    /// What each tenant may hold and send by default (an operator raises
    /// or lowers them per tenant: `PUT /v1/operator/tenants/{id}/quotas`).
    pub quotas: QuotaConfig,
    /// The run queue's retries (`[runs]`).
    pub runs: RunsConfig,
    /// Messages between agents (`[agent_messages]`).
    pub agent_messages: AgentMessagesConfig,
}

/// `[agent_messages]`: bounds of `delta:agent/agents` (see
/// `crate::agent_messages`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentMessagesConfig {
    /// Largest message, bytes of its JSON (default 64 KiB).
    pub max_bytes: u64,
    /// Longest chain of messages: a run a message started may send on
    /// until its message is this deep (default 8).
    pub max_depth: u32,
    /// Most messages one run may send (default 100).
    pub max_per_run: u32,
    /// Messages per minute one agent may send, on each replica (default
    /// 600; 0: no limit).
    pub per_agent_per_minute: u32,
}

impl Default for AgentMessagesConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            max_depth: 8,
            max_per_run: 100,
            per_agent_per_minute: 600,
        }
    }
}

/// `[runs]`: how the dispatcher retries a run no node took.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunsConfig {
    /// Deliveries of one run before it is `dead` (default 5; at least 1).
    pub max_deliveries: u32,
    /// The first retry's wait, ms (default 1 s); each next one doubles,
    /// with up to a quarter more as jitter (replicas do not retry in step).
    pub retry_base_ms: u64,
    /// The longest wait between two deliveries, ms (default 60 s).
    pub retry_max_ms: u64,
    /// How often a replica's dispatcher looks for due runs, ms (default
    /// 500).
    pub poll_ms: u64,
}

impl Default for RunsConfig {
    fn default() -> Self {
        Self {
            max_deliveries: 5,
            retry_base_ms: 1_000,
            retry_max_ms: 60_000,
            poll_ms: 500,
        }
    }
}

/// `[templates]`: who approves message templates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesConfig {
    /// Whether a template a tenant admin approved also needs a platform
    /// operator's approval before it can be sent (it waits as
    /// `pending_operator`): `none` (default, and `delta up`), `first` (until
    /// an operator has approved one of the tenant's templates: a new
    /// tenant's first ones), `all`. With open registration, `first` or
    /// `all` keeps strangers from sending arbitrary mail through the
    /// operator's SMTP or SMS account.
    pub operator_review: OperatorReview,
}

/// `[templates] operator_review`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperatorReview {
    /// Tenant admins approve alone.
    #[default]
    None,
    /// Until an operator approved one of the tenant's templates.
    First,
    /// Every approval.
    All,
}

/// `[quotas]`: per-tenant defaults. A stranger who registers gets these, so
/// they bound what open registration can cost the operator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Bytes of components a tenant may keep (default 1 GiB); an upload
    /// past it answers 413 `quota_exceeded`.
    pub component_bytes: u64,
    /// Messages (email and SMS) a tenant's agents may send per UTC day
    /// (default 1,000); past it a send is refused before delivery and the
    /// guest sees `rate-limited` until the next day.
    pub messages_per_day: u64,
    /// Agents (main and bots) a tenant may have at once (default 100).
    pub agents: u64,
    /// Schedules one agent may have (default 100). The same for every
    /// tenant: each schedule is work for the fire loop of every replica.
    pub schedules_per_agent: u64,
    /// Inbound webhooks one agent may have (default 100), the same for
    /// every tenant.
    pub webhooks_per_agent: u64,
    /// A component no agent or open bounty of its tenant uses is deleted
    /// (its row, and its file once no tenant has it) this long after it was
    /// uploaded (default 7 days), by the sweep.
    pub component_gc_grace_secs: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            component_bytes: 1 << 30,
            messages_per_day: 1_000,
            agents: 100,
            schedules_per_agent: 100,
            webhooks_per_agent: 100,
            component_gc_grace_secs: 7 * 24 * 3600,
        }
    }
}

/// Limits of login, registration and refresh, checked before any password
/// hashing (see [`crate::guard`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthLimitsConfig {
    /// Requests per minute per client IP (0: off).
    pub per_ip_per_min: u32,
    /// Burst per client IP.
    pub per_ip_burst: u32,
    /// Failed logins of one account in a row before it is locked (0: off).
    pub lockout_after: u32,
    /// The first lockout; each further failure doubles it.
    pub lockout_base_secs: u64,
    /// The longest lockout.
    pub lockout_max_secs: u64,
}

impl Default for AuthLimitsConfig {
    fn default() -> Self {
        Self {
            per_ip_per_min: 60,
            per_ip_burst: 20,
            lockout_after: 5,
            lockout_base_secs: 1,
            lockout_max_secs: 900,
        }
    }
}

/// Request rate limits (GCRA): a sustained rate and a burst, per API key (or
/// per session user) and per tenant. A rate of 0 turns that limit off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second per API key or session user.
    pub per_key_per_sec: u32,
    /// Burst per API key or session user.
    pub per_key_burst: u32,
    /// Requests per second per tenant.
    pub per_tenant_per_sec: u32,
    /// Burst per tenant.
    pub per_tenant_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_key_per_sec: 50,
            per_key_burst: 100,
            per_tenant_per_sec: 200,
            per_tenant_burst: 400,
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            drain_grace_secs: 30,
            state_dir: PathBuf::from(".delta/control"),
            database_url: None,
            jwt_secret_file: None,
            jwt_previous_secret_file: None,
            node_api_secret_file: None,
            allow_registration: false,
            require_email_verification: false,
            smtp: None,
            operators: Vec::new(),
            max_tenants_per_user: 5,
            session_max_secs: 30 * 24 * 3600,
            allow_plain_http_nodes: false,
            node_heartbeat_timeout_secs: 15,
            max_body_bytes: 1 << 20,
            max_component_bytes: 64 << 20,
            tiers: BTreeMap::from([
                ("free".to_owned(), 1_000),
                ("developer".to_owned(), 10_000),
                ("team".to_owned(), 100_000),
            ]),
            default_tier: "developer".to_owned(),
            lease_ttl_secs: 120,
            token_request_ttl_secs: 7 * 24 * 3600,
            run_output_ttl_secs: 24 * 3600,
            idempotency_ttl_secs: 24 * 3600,
            record_retention_secs: 90 * 24 * 3600,
            audit_retention_secs: 365 * 24 * 3600,
            redis_url: None,
            rate_limit: RateLimitConfig::default(),
            auth_limits: AuthLimitsConfig::default(),
            bounty_fee_bps: 1_500,
            payments: crate::payments::PaymentsConfig::default(),
            max_submission_bytes: 64 << 10,
            artifacts: crate::bounties::ArtifactsConfig::default(),
            allow_private_webhook_urls: false,
            webhook_retry_base_ms: 1_000,
            max_webhook_body_bytes: 256 << 10,
            kv: delta_kv::KvLimits::default(),
            vault_key_file: None,
            templates: TemplatesConfig::default(),
            quotas: QuotaConfig::default(),
            runs: RunsConfig::default(),
            agent_messages: AgentMessagesConfig::default(),
        }
    }
}

/// Values given on the command line or in the environment; each set one
/// replaces the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `DELTA_CONTROL_LISTEN`.
    pub listen: Option<std::net::SocketAddr>,
    /// `--database-url` / `DELTA_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--state-dir` / `DELTA_CONTROL_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
}

impl ControlConfig {
    /// Apply flags and environment on top of the file.
    pub fn apply_overrides(&mut self, o: Overrides) {
        if let Some(listen) = o.listen {
            self.listen = listen;
        }
        if let Some(url) = o.database_url {
            self.database_url = Some(url);
        }
        if let Some(dir) = o.state_dir {
            self.state_dir = dir;
        }
    }

    /// Read `path`; relative paths are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let stripe_files = config
            .payments
            .stripe
            .as_mut()
            .map(|s| [&mut s.secret_key_file, &mut s.webhook_secret_file]);
        for p in [
            Some(&mut config.state_dir),
            config.jwt_secret_file.as_mut(),
            config.jwt_previous_secret_file.as_mut(),
            config.node_api_secret_file.as_mut(),
            config.vault_key_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        .chain(stripe_files.into_iter().flatten())
        .chain(config.smtp.as_mut().and_then(|s| s.password_file.as_mut()))
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Parse the text of `path` (nothing resolved or validated yet). A
    /// setting that was removed is refused with what replaces it, rather
    /// than as an unknown field.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        if table.contains_key("node_token_file") {
            return Err(ConfigError::Invalid(format!(
                "{}: node_token_file is no longer supported: one token shared by every node let \
                 any node act as any other. Enrol each node with `delta nodes enroll <node-id>` \
                 (its [control_plane] token_file then holds its own credential), and set \
                 node_api_secret_file to the secret each node's API token is derived from \
                 (enrolment answers the node's token for its own token_file)",
                path.display()
            )));
        }
        if table.contains_key("node_api_token_file") {
            return Err(ConfigError::Invalid(format!(
                "{}: node_api_token_file is no longer supported: one token the control plane \
                 presented to every node let any node call every other. Set \
                 node_api_secret_file to a secret of 32 characters or more (e.g. \
                 `openssl rand -base64 32`); each node's token_file then holds its own token, \
                 which `delta nodes enroll <node-id> --node-token-out FILE` writes",
                path.display()
            )));
        }
        toml::from_str(text).map_err(|e| parse_error(e.to_string()))
    }

    /// Values out of range. Retention shorter than a day would delete
    /// leases a node may still return and run ids a node may still resend.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const DAY: u64 = 24 * 3600;
        if let Some(problem) = self.kv.problem() {
            return Err(ConfigError::Invalid(problem));
        }
        for (name, secs) in [
            ("record_retention_secs", self.record_retention_secs),
            ("audit_retention_secs", self.audit_retention_secs),
        ] {
            if secs < DAY {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be at least {DAY} (one day), not {secs}"
                )));
            }
        }
        for op in &self.operators {
            if !op.contains('@') || op.trim() != op {
                return Err(ConfigError::Invalid(format!(
                    "operators: {op:?} is not an email address"
                )));
            }
        }
        if self.session_max_secs == 0 {
            return Err(ConfigError::Invalid(
                "session_max_secs must be at least 1".to_owned(),
            ));
        }
        if self.runs.max_deliveries == 0 || self.runs.poll_ms == 0 {
            return Err(ConfigError::Invalid(
                "[runs] max_deliveries and poll_ms must be at least 1".to_owned(),
            ));
        }
        let am = &self.agent_messages;
        if am.max_bytes == 0 || am.max_depth == 0 || am.max_per_run == 0 {
            return Err(ConfigError::Invalid(
                "[agent_messages] max_bytes, max_depth and max_per_run must be at least 1"
                    .to_owned(),
            ));
        }
        if self.bounty_fee_bps > 10_000 {
            return Err(ConfigError::Invalid(format!(
                "bounty_fee_bps must be at most 10000 (100 %), not {}",
                self.bounty_fee_bps
            )));
        }
        if self.require_email_verification && self.smtp.is_none() {
            return Err(ConfigError::Invalid(
                "require_email_verification needs an [smtp] relay to send the tokens".to_owned(),
            ));
        }
        if let Some(problem) = self.payments.problem() {
            return Err(ConfigError::Invalid(problem));
        }
        if !(10..=3_600_000).contains(&self.webhook_retry_base_ms) {
            return Err(ConfigError::Invalid(format!(
                "webhook_retry_base_ms must be between 10 and 3600000, not {}",
                self.webhook_retry_base_ms
            )));
        }
        if self.max_tenants_per_user == 0 {
            return Err(ConfigError::Invalid(
                "max_tenants_per_user must be at least 1 (registration makes one)".to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether the account with `email` (normalised: lower case) is a
    /// platform operator.
    pub fn is_operator(&self, email: &str) -> bool {
        let email = email.to_lowercase();
        self.operators.iter().any(|op| op.to_lowercase() == email)
    }

    /// The database URL, defaulting to SQLite in the state directory.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.state_dir.join("control.db").display()
            )
        })
    }
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
        let config: ControlConfig = toml::from_str(&toml).expect("example parses");
        assert!(config.database_url().starts_with("postgres://"));
        assert!(config.allow_registration);
        assert!(config.is_operator("OPS@example.com"));
        config.validate().expect("the example is valid");
    }

    #[test]
    fn registration_is_closed_and_nobody_is_an_operator_by_default() {
        let config = ControlConfig::default();
        assert!(!config.allow_registration);
        assert!(!config.is_operator("admin@delta.local"));
        let bad = ControlConfig {
            operators: vec!["not an address".to_owned()],
            ..ControlConfig::default()
        };
        let err = bad.validate().expect_err("not an email");
        assert!(err.to_string().contains("operators"), "{err}");
    }

    #[test]
    fn a_config_naming_node_token_file_is_refused_with_what_to_use() {
        let path = Path::new("/etc/delta/control.toml");
        let err = ControlConfig::parse(path, "node_token_file = \"/etc/delta/node-token\"\n")
            .expect_err("the shared fleet token is gone");
        let message = err.to_string();
        assert!(matches!(err, ConfigError::Invalid(_)), "{message}");
        for hint in [
            "node_token_file",
            "delta nodes enroll",
            "node_api_secret_file",
        ] {
            assert!(message.contains(hint), "{hint} missing from: {message}");
        }
        let err = ControlConfig::parse(path, "node_api_token_file = \"/etc/delta/t\"\n")
            .expect_err("the shared node API token is gone");
        let message = err.to_string();
        for hint in [
            "node_api_token_file",
            "node_api_secret_file",
            "--node-token-out",
        ] {
            assert!(message.contains(hint), "{hint} missing from: {message}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("control.toml");
        std::fs::write(&file, "node_token_file = \"node-token\"\n").expect("write");
        assert!(ControlConfig::load(&file).is_err());
        std::fs::write(&file, "node_api_secret_file = \"node-api-secret\"\n").expect("write");
        let config = ControlConfig::load(&file).expect("the replacement parses");
        assert_eq!(
            config.node_api_secret_file,
            Some(dir.path().join("node-api-secret"))
        );
    }

    #[test]
    fn a_bounty_fee_over_100_percent_is_refused() {
        assert_eq!(ControlConfig::default().bounty_fee_bps, 1_500);
        let config = ControlConfig {
            bounty_fee_bps: 10_001,
            ..ControlConfig::default()
        };
        let err = config.validate().expect_err("over 100 %");
        assert!(err.to_string().contains("bounty_fee_bps"), "{err}");
    }

    #[test]
    fn retention_under_a_day_is_refused() {
        let config = ControlConfig {
            record_retention_secs: 3600,
            ..ControlConfig::default()
        };
        let err = config.validate().expect_err("an hour is too short");
        assert!(err.to_string().contains("record_retention_secs"), "{err}");
        ControlConfig::default()
            .validate()
            .expect("defaults are valid");
    }
}
