//! The state every handler reaches ([`AppState`]): the database, keys,
//! configuration, metrics, limits and the HTTP client for nodes, opened
//! from the configuration. The bottom layer of the control plane: it
//! depends on no handler module (ARCHITECTURE.md, "control plane layers").

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use delta_http::config::loose_permissions;

use crate::auth::JwtKeys;
use crate::config::ControlConfig;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::scripts::ScriptPreparer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// Access-token keys.
    pub keys: Arc<JwtKeys>,
    /// The configuration.
    pub config: Arc<ControlConfig>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The secret each node's API token is derived from
    /// (`node_api_secret_file`, see [`crate::nodeauth::node_api_token`];
    /// nodes authenticate to the control plane with their own credentials).
    node_api_secret: Option<Arc<[u8]>>,
    /// HTTP client for calls to nodes.
    pub http: reqwest::Client,
    /// Where uploaded components are kept (by sha256).
    pub components_dir: PathBuf,
    /// Request rate limits (in process, or shared through Redis).
    pub limiter: Arc<RateLimiter>,
    /// Per-IP limits and account lockout of the anonymous routes.
    pub guard: Arc<crate::guard::AuthGuard>,
    /// Verified API keys, dropped on any change to them (see
    /// [`crate::keycache`]).
    pub key_cache: Arc<crate::keycache::KeyCache>,
    /// Turns JavaScript uploads into components (none: such uploads
    /// answer 501 `not_configured`; see [`crate::scripts`]).
    pub scripts: Option<Arc<dyn ScriptPreparer>>,
    /// The relay for the control plane's own mail, when `[smtp]` is set.
    pub mailer: Option<Arc<crate::mailer::Mailer>>,
    /// Stripe, when `[payments.stripe]` is configured.
    pub stripe: Option<Arc<crate::payments::Stripe>>,
    /// Bounty submission artifacts and their signed URLs (`[artifacts]`).
    pub artifacts: Arc<crate::bounties::Artifacts>,
    /// The run queue (the table, signalled through Redis Streams when
    /// `redis_url` is set).
    pub run_queue: crate::dispatch::Queue,
    /// The leaderboard's ranking, cached in Redis when `redis_url` is set.
    pub leaderboard: crate::reputation::LeaderboardCache,
    /// Agents' key-value state, in this database (`[kv]` bounds).
    pub kv: delta_kv::KvStore,
    /// Tenants' secrets vault (none without `vault_key_file`: its routes
    /// answer 501).
    pub vault: Option<Arc<crate::vault::Vault>>,
    /// Messages per minute per sending agent (`[agent_messages]
    /// per_agent_per_minute`; none: no limit), counted on this replica.
    pub agent_message_limit: Option<Arc<governor::DefaultKeyedRateLimiter<String>>>,
    /// Serialises deployments of one agent within this process (see
    /// [`AppState::lock_deploys`]).
    deploy_locks: Arc<[tokio::sync::Mutex<()>]>,
}

impl AppState {
    /// Open the database, keys and directories `config` names.
    pub async fn open(config: ControlConfig) -> anyhow::Result<Self> {
        config.validate()?;
        {
            use std::os::unix::fs::DirBuilderExt;
            // 0700: it holds the database, the access-token secret and
            // tenants' components.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.state_dir)
                .with_context(|| format!("creating {}", config.state_dir.display()))?;
        }
        if let Some(problem) = loose_permissions(&config.state_dir, "the state directory", "700") {
            tracing::warn!("{problem}");
        }
        let db = Db::connect(&config.database_url())
            .await
            .context("opening the control plane's database")?;
        let secret_file = config
            .jwt_secret_file
            .clone()
            .unwrap_or_else(|| config.state_dir.join("jwt-secret"));
        // Whoever reads it can mint any user's session: refuse to start.
        if let Some(problem) = loose_permissions(&secret_file, "the access-token secret", "600") {
            anyhow::bail!("{problem}");
        }
        let mut keys = JwtKeys::load_or_create(&secret_file)
            .with_context(|| format!("access-token secret {}", secret_file.display()))?;
        if let Some(previous) = &config.jwt_previous_secret_file {
            if let Some(problem) =
                loose_permissions(previous, "the previous access-token secret", "600")
            {
                anyhow::bail!("{problem}");
            }
            let secret = std::fs::read(previous)
                .with_context(|| format!("reading {}", previous.display()))?;
            if secret.len() < 32 {
                anyhow::bail!("{} holds fewer than 32 bytes", previous.display());
            }
            keys = keys.with_previous(&secret);
        }
        let node_api_secret = match &config.node_api_secret_file {
            Some(path) => {
                if let Some(problem) = loose_permissions(path, "the node API secret", "600") {
                    tracing::warn!("{problem}");
                }
                let secret = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let secret = secret.trim();
                if secret.len() < MIN_NODE_API_SECRET {
                    anyhow::bail!(
                        "{} holds fewer than {MIN_NODE_API_SECRET} characters: the node API \
                         secret must be a real secret (e.g. `openssl rand -base64 32`)",
                        path.display()
                    );
                }
                Some(Arc::from(secret.as_bytes()))
            }
            None => {
                tracing::warn!(
                    "no node_api_secret_file in control.toml: nodes will refuse the control \
                     plane's calls (set it; each node's token_file then holds the token \
                     `delta nodes enroll` prints for it)"
                );
                None
            }
        };
        let stripe = match &config.payments.stripe {
            Some(s) => {
                for (file, what) in [
                    (&s.secret_key_file, "the Stripe secret key"),
                    (&s.webhook_secret_file, "the Stripe webhook secret"),
                ] {
                    if let Some(problem) = loose_permissions(file, what, "600") {
                        tracing::warn!("{problem}");
                    }
                }
                Some(crate::payments::Stripe::open(s).context("[payments.stripe]")?)
            }
            None => None,
        };
        let mailer = match &config.smtp {
            Some(smtp) => Some(Arc::new(crate::mailer::Mailer::new(smtp)?)),
            None => None,
        };
        let components_dir = config.state_dir.join("components");
        std::fs::create_dir_all(&components_dir)?;
        let artifacts = crate::bounties::Artifacts::open(&config.artifacts, &config.state_dir)
            .context("[artifacts]")?;
        // Not fatal (a replica must start while its bucket has a bad
        // minute; uploads answer 503 meanwhile), but said at once.
        if let Err(store) = artifacts.probe().await {
            tracing::warn!(%store, "the artifact store does not answer");
        }
        // No redirects: a node's answer must come from the node, never
        // send the control plane (and its node API token) somewhere else.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        let metrics = Metrics::new();
        let limiter = RateLimiter::new(
            &config.rate_limit,
            config.redis_url.as_deref(),
            metrics.registry(),
        )
        .context("setting up rate limits")?;
        let run_queue = crate::dispatch::Queue::open(db.clone(), config.redis_url.as_deref())
            .context("setting up the run queue")?;
        let leaderboard = crate::reputation::LeaderboardCache::open(config.redis_url.as_deref())
            .map_err(anyhow::Error::msg)
            .context("setting up the leaderboard cache")?;
        let guard = Arc::new(crate::guard::AuthGuard::new(&config.auth_limits));
        let key_cache = crate::keycache::KeyCache::open(&db, &config.database_url());
        let kv = delta_kv::KvStore::new(db.pool().any().clone(), config.kv);
        let vault = match &config.vault_key_file {
            Some(path) => Some(Arc::new(
                crate::vault::Vault::load(path).context("vault_key_file")?,
            )),
            None => None,
        };
        let agent_message_limit =
            std::num::NonZeroU32::new(config.agent_messages.per_agent_per_minute)
                .map(|n| Arc::new(governor::RateLimiter::keyed(governor::Quota::per_minute(n))));
        Ok(Self {
            kv,
            vault,
            db,
            keys: Arc::new(keys),
            config: Arc::new(config),
            metrics: Arc::new(metrics),
            node_api_secret,
            http,
            components_dir,
            limiter: Arc::new(limiter),
            guard,
            key_cache,
            scripts: None,
            stripe,
            artifacts: Arc::new(artifacts),
            run_queue,
            leaderboard,
            mailer,
            agent_message_limit,
            deploy_locks: (0..DEPLOY_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    /// The token the control plane presents to `node_id` (none without
    /// `node_api_secret_file`: the node then answers 401).
    pub fn node_api_token(&self, node_id: &str) -> Option<String> {
        self.node_api_secret
            .as_deref()
            .map(|secret| crate::nodeauth::node_api_token(secret, node_id))
    }

    /// Prepare JavaScript uploads with `scripts`.
    pub fn with_scripts(mut self, scripts: Arc<dyn ScriptPreparer>) -> Self {
        self.scripts = Some(scripts);
        self
    }

    /// Hold while changing what an agent's node runs: an update holds it
    /// from reading the agent until its row is written, a redeployment from
    /// re-reading the row until the node has it. Without it, a
    /// reconciliation that read the row just before an update committed
    /// could push the old spec over the new one. (Replicas do not share
    /// it: across them the next reconciliation repairs such a race.)
    pub async fn lock_deploys(&self, agent_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        agent_id.hash(&mut hasher);
        let stripe = (hasher.finish() % self.deploy_locks.len() as u64) as usize;
        self.deploy_locks[stripe].lock().await
    }
}

/// Shortest node API secret accepted (characters): every node's token is
/// derived from it.
const MIN_NODE_API_SECRET: usize = 32;

/// Locks shared by agents whose ids hash alike: enough that unrelated
/// deployments rarely wait on each other.
const DEPLOY_LOCK_STRIPES: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_state_dir_is_private_and_an_open_secret_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ControlConfig {
            state_dir: dir.path().join("state"),
            ..ControlConfig::default()
        };
        drop(AppState::open(config.clone()).await.expect("opens"));
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
        };
        assert_eq!(mode(&config.state_dir), 0o700);
        let secret = config.state_dir.join("jwt-secret");
        assert_eq!(mode(&secret), 0o600);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = AppState::open(config).await;
        let message = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(
            message.contains("jwt-secret") && message.contains("chmod 600"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_previous_jwt_secret_keeps_its_tokens_valid_during_a_rotation() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ControlConfig {
            state_dir: dir.path().join("state"),
            ..ControlConfig::default()
        };
        let before = AppState::open(config.clone()).await.expect("opens");
        let (token, _) = before.keys.issue("u1", "t1", "f1").expect("issue");
        drop(before);
        // The operator moves the secret aside and makes a new one.
        let old = config.state_dir.join("jwt-secret");
        let previous = dir.path().join("jwt-previous");
        std::fs::rename(&old, &previous).expect("move");
        let rotated = ControlConfig {
            jwt_previous_secret_file: Some(previous.clone()),
            ..config.clone()
        };
        let state = AppState::open(rotated.clone()).await.expect("opens");
        assert_eq!(state.keys.verify(&token).expect("still valid").sub, "u1");
        let (fresh, _) = state.keys.issue("u2", "t1", "f2").expect("issue");
        assert!(state.keys.verify(&fresh).is_ok());
        drop(state);
        // Without it, the old token is refused; an open previous secret is
        // refused at start like the current one.
        let state = AppState::open(config).await.expect("opens");
        assert!(state.keys.verify(&token).is_err());
        drop(state);
        std::fs::set_permissions(&previous, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = AppState::open(rotated).await;
        let message = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(message.contains("jwt-previous"), "{message}");
    }

    #[tokio::test]
    async fn a_short_node_api_secret_is_refused_and_each_node_gets_its_own_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("node-secret");
        std::fs::write(&secret, "short-0123456789\n").expect("secret");
        let config = ControlConfig {
            state_dir: dir.path().join("state"),
            node_api_secret_file: Some(secret.clone()),
            ..ControlConfig::default()
        };
        let refused = AppState::open(config.clone()).await;
        let message = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(message.contains("fewer than 32"), "{message}");
        std::fs::write(&secret, "a-real-fleet-secret-0123456789-abcdef").expect("secret");
        let state = AppState::open(config).await.expect("opens");
        let a = state.node_api_token("node-a").expect("token");
        let b = state.node_api_token("node-b").expect("token");
        assert!(a.starts_with("nat_") && a.len() == 4 + 64, "{a}");
        assert_ne!(a, b);
        assert_eq!(
            a,
            crate::nodeauth::node_api_token(b"a-real-fleet-secret-0123456789-abcdef", "node-a")
        );
    }
}
