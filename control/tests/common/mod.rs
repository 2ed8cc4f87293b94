//! Shared set-up of the control plane's API tests: a real server on
//! loopback, on SQLite or PostgreSQL, and a client.
//!
//! PostgreSQL comes from `DELTA_TEST_POSTGRES_URL` (a role allowed to create
//! databases; `.ci/run` starts Debian's server and sets it). Each test gets a
//! fresh database. Without the variable the PostgreSQL variants fail loudly:
//! the suite must run on both.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use delta_control::app::AppState;
use delta_control::config::ControlConfig;

pub mod bounties;
pub mod redis;
pub mod webhooks;

/// The binary's script preparer (`delta control` installs the same one).
#[path = "../../../src/scripts.rs"]
pub mod scripts;

/// One preparer per test binary: it compiles the QuickJS engine once.
pub fn script_preparer() -> std::sync::Arc<scripts::JsScripts> {
    static PREPARER: std::sync::OnceLock<std::sync::Arc<scripts::JsScripts>> =
        std::sync::OnceLock::new();
    std::sync::Arc::clone(
        PREPARER.get_or_init(|| std::sync::Arc::new(scripts::JsScripts::new().expect("preparer"))),
    )
}
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A SQLite file in the test's state directory.
    Sqlite,
    /// A fresh database on `DELTA_TEST_POSTGRES_URL`'s server.
    Postgres,
}

/// Run a test body on both databases: `both!(name, |ctl| async move { ... });`
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let ctl = $crate::common::Control::start($crate::common::Dialect::Sqlite).await;
                ($body)(ctl).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let ctl = $crate::common::Control::start($crate::common::Dialect::Postgres).await;
                ($body)(ctl).await;
            }
        }
    };
}

/// [`both!`] with the configuration adjusted:
/// `both_with!(name, |config| { ... }, |ctl| async move { ... });`
#[macro_export]
macro_rules! both_with {
    ($name:ident, $tweak:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let ctl =
                    $crate::common::Control::start_with($crate::common::Dialect::Sqlite, $tweak)
                        .await;
                ($body)(ctl).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let ctl =
                    $crate::common::Control::start_with($crate::common::Dialect::Postgres, $tweak)
                        .await;
                ($body)(ctl).await;
            }
        }
    };
}

/// A running control plane.
pub struct Control {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A plain client.
    pub client: reqwest::Client,
    /// The state shared with the server (database, keys).
    pub state: AppState,
    /// State directory (kept for the test's lifetime).
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The operator's access token, for enrolments (made on first use).
    operator_access: tokio::sync::OnceCell<String>,
    /// Credentials issued by [`Control::node_credential`], by node id.
    credentials: tokio::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Declared last so that it drops after the server is told to stop.
    _database: Option<TestDatabase>,
}

/// A registered user with a session in their own tenant.
#[derive(Debug, Clone)]
pub struct Session {
    /// User id.
    pub user_id: String,
    /// Their personal tenant.
    pub tenant_id: String,
    /// Access token.
    pub access: String,
    /// Refresh token.
    pub refresh: String,
    /// Email (for logins).
    pub email: String,
    /// Password.
    pub password: String,
}

/// Record retention of test control planes: a century, so that records
/// with fixed dates are never too old.
pub const TEST_RETENTION_SECS: u64 = 100 * 365 * 24 * 3600;

/// The secret test control planes derive each node's API token from
/// (`node_api_secret_file`). Nodes present their own credentials
/// ([`Control::node_credential`]).
pub const NODE_API_SECRET: &str = "test-node-api-secret-0123456789-abcdef";

/// What test control planes present to `node_id` (that node's own
/// `token_file`).
pub fn node_api_token(node_id: &str) -> String {
    delta_control::nodeauth::node_api_token(NODE_API_SECRET.as_bytes(), node_id)
}

/// Write `value` to `path`, mode 0600 (secret files are checked for group
/// and world access).
/// A control plane whose secrets vault key is in its test directory.
pub fn with_vault(c: &mut ControlConfig) {
    let path = c.state_dir.with_file_name("vault-key");
    write_secret(&path, &"ab".repeat(32));
    c.vault_key_file = Some(path);
}

pub fn write_secret(path: &std::path::Path, value: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    file.write_all(value.as_bytes()).expect("write secret");
}

/// An agent row of `s`'s tenant (owned by them) placed on `node_id`,
/// without deploying anything: for suites that only need the control
/// plane to know the agent (usage, budgets as a node sees them).
pub async fn insert_agent(ctl: &Control, s: &Session, name: &str, node_id: Option<&str>) -> String {
    insert_agent_row(&ctl.state.db, &s.tenant_id, &s.user_id, name, node_id).await
}

/// [`insert_agent`] on any control plane's database.
pub async fn insert_agent_row(
    db: &delta_control::db::Db,
    tenant_id: &str,
    user_id: &str,
    name: &str,
    node_id: Option<&str>,
) -> String {
    let id = format!("agt_{name}_{}", uuid::Uuid::new_v4().simple());
    let now = delta_control::db::now_ms();
    sqlx::query(
        "INSERT INTO agents (id, tenant_id, name, kind, parent_agent_id, component, limits, \
             grants, paused, node_id, created_at_ms, updated_at_ms, owner_user_id) \
         VALUES ($1, $2, $3, 'main', NULL, 'c', '{}', '{}', 0, $4, $5, $5, $6)",
    )
    .bind(&id)
    .bind(tenant_id)
    .bind(name)
    .bind(node_id)
    .bind(now)
    .bind(user_id)
    .execute(db.pool())
    .await
    .expect("agent row");
    id
}

/// Enrol `node_id` with the control plane at `base` as the operator
/// whose access token is `operator`: the answer's body (`{node_id,
/// credential_id, credential}`).
pub async fn enrol_node(
    client: &reqwest::Client,
    base: &str,
    operator: &str,
    node_id: &str,
) -> Value {
    let resp = client
        .post(format!("{base}/v1/operator/nodes"))
        .bearer_auth(operator)
        .json(&json!({ "node_id": node_id }))
        .send()
        .await
        .expect("enrol");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::CREATED, "enrolling {node_id}: {body}");
    body
}

/// Put agent `agent_id` on `node_id` (as placement would), so that the
/// node's credential may act for it.
pub async fn place_agent(ctl: &Control, agent_id: &str, node_id: &str) {
    let placed = sqlx::query("UPDATE agents SET node_id = $1 WHERE id = $2")
        .bind(node_id)
        .bind(agent_id)
        .execute(ctl.state.db.pool())
        .await
        .expect("placing the agent");
    assert_eq!(placed.rows_affected(), 1, "no agent {agent_id}");
}

/// The platform operator of test control planes (`operators` in their
/// configuration); [`Control::operator`] makes the account.
pub const OPERATOR_EMAIL: &str = "operator@example.com";

impl Control {
    /// Start a control plane with default settings.
    pub async fn start(dialect: Dialect) -> Self {
        Self::start_with(dialect, |_| {}).await
    }

    /// Start with the configuration adjusted by `tweak`.
    pub async fn start_with(dialect: Dialect, tweak: impl FnOnce(&mut ControlConfig)) -> Self {
        Self::start_inner(dialect, tweak, true).await
    }

    /// Start without a script preparer (as a control plane embedded
    /// without `delta-js` would be).
    pub async fn start_without_scripts(dialect: Dialect) -> Self {
        Self::start_inner(dialect, |_| {}, false).await
    }

    async fn start_inner(
        dialect: Dialect,
        tweak: impl FnOnce(&mut ControlConfig),
        scripts: bool,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        write_secret(&dir.path().join("node-api-secret"), NODE_API_SECRET);
        let mut config = ControlConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            state_dir: dir.path().join("state"),
            node_api_secret_file: Some(dir.path().join("node-api-secret")),
            // Generous: a loaded machine must not lose a test's only node.
            node_heartbeat_timeout_secs: 15,
            // Suites call many routes quickly with one credential; the
            // limits have their own tests (crosscutting.rs), which set them.
            rate_limit: delta_control::config::RateLimitConfig {
                per_key_per_sec: 0,
                per_key_burst: 0,
                per_tenant_per_sec: 0,
                per_tenant_burst: 0,
            },
            // Suites send usage records with fixed dates (day boundaries
            // are asserted); the retention tests in sweep.rs set their own.
            record_retention_secs: TEST_RETENTION_SECS,
            // Suites register their users; closed registration (the
            // default) has its own tests.
            allow_registration: true,
            operators: vec![OPERATOR_EMAIL.to_owned()],
            // Every request comes from 127.0.0.1: the per-address limit is
            // off (security.rs tests it); the account lockout stays on.
            auth_limits: delta_control::config::AuthLimitsConfig {
                per_ip_per_min: 0,
                ..Default::default()
            },
            ..ControlConfig::default()
        };
        let database = match dialect {
            Dialect::Postgres => Some(fresh_postgres_database().await),
            Dialect::Sqlite => None,
        };
        config.database_url = database.as_ref().map(|d| d.url.clone());
        tweak(&mut config);
        let mut state = AppState::open(config.clone()).await.expect("control state");
        if scripts {
            state = state.with_scripts(script_preparer());
        }
        let (listener, addr) = delta_control::app::bind(config.listen).await.expect("bind");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_state = state.clone();
        tokio::spawn(async move {
            let _ = delta_control::app::serve(server_state, listener, async move {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            url: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            state,
            dir,
            shutdown: Some(tx),
            operator_access: tokio::sync::OnceCell::new(),
            credentials: Default::default(),
            _database: database,
        }
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A request with `token` as bearer (if any) and `body` as JSON (if
    /// any); answers the status and the JSON body (or the text as a string).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Register a user (their personal tenant comes with it) and log in.
    pub async fn register(&self, name: &str) -> Session {
        let email = format!("{name}@example.com");
        let password = format!("pw-{name}-long-enough");
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({ "email": email, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "register {name}: {body}");
        let (status, login) = self
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": email, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {name}: {login}");
        Session {
            user_id: body["user"]["id"].as_str().expect("user id").to_owned(),
            tenant_id: login["tenant_id"].as_str().expect("tenant id").to_owned(),
            access: login["access_token"].as_str().expect("access").to_owned(),
            refresh: login["refresh_token"].as_str().expect("refresh").to_owned(),
            email,
            password,
        }
    }

    /// The platform operator, logged in to their own tenant: the account
    /// is made in process on first use (an operator's address cannot be
    /// registered over HTTP).
    pub async fn operator(&self) -> Session {
        let password = "pw-operator-long-enough".to_owned();
        let user_id = match delta_control::identity::create_account(
            &self.state,
            OPERATOR_EMAIL,
            password.clone(),
            Some("operations"),
            None,
        )
        .await
        {
            Ok(created) => created.user.id,
            Err(e) if e.code == "email_taken" => String::new(),
            Err(e) => panic!("creating the operator: {} ({})", e.message, e.code),
        };
        let (status, login) = self
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": OPERATOR_EMAIL, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "operator login: {login}");
        let (_, me) = self
            .call(Method::GET, "/v1/me", login["access_token"].as_str(), None)
            .await;
        Session {
            user_id: if user_id.is_empty() {
                me["user"]["id"].as_str().unwrap_or_default().to_owned()
            } else {
                user_id
            },
            tenant_id: login["tenant_id"].as_str().expect("tenant id").to_owned(),
            access: login["access_token"].as_str().expect("access").to_owned(),
            refresh: login["refresh_token"].as_str().expect("refresh").to_owned(),
            email: OPERATOR_EMAIL.to_owned(),
            password,
        }
    }

    /// `who` joins the current tenant of `inviter_token` with `role`: the
    /// invitation, then `who` accepts it. Answers the invitation's refusal,
    /// or the acceptance (200 and the membership).
    pub async fn invite_and_accept(
        &self,
        inviter_token: &str,
        who: &Session,
        role: &str,
    ) -> (StatusCode, Value) {
        let (status, invited) = self
            .call(
                Method::POST,
                "/v1/tenants/current/members",
                Some(inviter_token),
                Some(json!({ "email": who.email, "role": role })),
            )
            .await;
        if status != StatusCode::ACCEPTED {
            return (status, invited);
        }
        let (_, me) = self
            .call(Method::GET, "/v1/me", Some(inviter_token), None)
            .await;
        let (status, page) = self
            .call(Method::GET, "/v1/invitations", Some(&who.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let id = page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["tenant_id"] == me["tenant_id"]))
            .and_then(|i| i["id"].as_str())
            .unwrap_or_else(|| panic!("no invitation for {} in {page}", who.email))
            .to_owned();
        self.call(
            Method::POST,
            &format!("/v1/invitations/{id}/accept"),
            Some(&who.access),
            None,
        )
        .await
    }

    /// The operator's access token (one login per control plane).
    pub async fn operator_token(&self) -> String {
        self.operator_access
            .get_or_init(|| async { self.operator().await.access })
            .await
            .clone()
    }

    /// Enrol `node_id` through the API as the operator: the answer's body
    /// (`{node_id, credential_id, credential}`).
    pub async fn enrol(&self, node_id: &str) -> Value {
        let token = self.operator_token().await;
        enrol_node(&self.client, &self.url, &token, node_id).await
    }

    /// The credential of `node_id`, enrolled on first use (the same one
    /// after: a node presents one credential).
    pub async fn node_credential(&self, node_id: &str) -> String {
        let mut issued = self.credentials.lock().await;
        if let Some(c) = issued.get(node_id) {
            return c.clone();
        }
        let body = self.enrol(node_id).await;
        let credential = body["credential"].as_str().expect("credential").to_owned();
        issued.insert(node_id.to_owned(), credential.clone());
        credential
    }

    /// The database this control plane runs on.
    pub fn dialect(&self) -> Dialect {
        match self.state.db.backend() {
            delta_control::db::Backend::Sqlite => Dialect::Sqlite,
            delta_control::db::Backend::Postgres => Dialect::Postgres,
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A second control-plane replica: its own server and state directory,
    /// on this one's database and access-token secret (as replicas behind
    /// one load balancer run).
    pub async fn replica(&self) -> Control {
        let database_url = self.state.config.database_url();
        let secret = self
            .state
            .config
            .jwt_secret_file
            .clone()
            .unwrap_or_else(|| self.state_dir().join("jwt-secret"));
        // Started as SQLite so that no fresh PostgreSQL database is made,
        // then pointed at this one's database, whichever it is.
        Self::start_with(Dialect::Sqlite, move |c| {
            c.database_url = Some(database_url);
            c.jwt_secret_file = Some(secret);
        })
        .await
    }
}

/// Upload the JavaScript module `source` as a component of `token`'s
/// tenant: the answer's status and body.
pub async fn upload_script(ctl: &Control, token: &str, source: &str) -> (StatusCode, Value) {
    let resp = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(token)
        .header("content-type", "text/javascript; charset=utf-8")
        .body(source.to_owned())
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    (status, resp.json().await.expect("json"))
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Poll `check` until it answers `Some`, or fail after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until `node` holds each of `runs` (the dispatcher's delivery was
/// accepted): a test that kills the node after this knows the runs were
/// out on it, not still in the control plane's queue.
pub async fn held_by(node: &delta_node::server::RunningNode, runs: &[&String]) {
    for id in runs {
        eventually(
            &format!("{} to hold run {id}", node.node().id()),
            Duration::from_secs(30),
            || async { node.node().get_run(id).await.ok() },
        )
        .await;
    }
}

/// A run of `agent` stored as the queue would hold it: its row in `runs`
/// (on `node`) and its queue row in `state`, due at `due_ms`.
pub async fn queue_run(
    ctl: &Control,
    who: &Session,
    agent: &str,
    id: &str,
    node: &str,
    state: &str,
    due_ms: i64,
) {
    sqlx::query(
        "INSERT INTO runs (id, tenant_id, agent_id, node_id, status, created_at_ms, \
         trigger_kind, trigger_id) VALUES ($1, $2, $3, $4, 'queued', $5, 'api', '')",
    )
    .bind(id)
    .bind(&who.tenant_id)
    .bind(agent)
    .bind(node)
    .bind(due_ms)
    .execute(ctl.state.db.pool())
    .await
    .expect("a run");
    sqlx::query(
        "INSERT INTO run_queue (run_id, tenant_id, agent_id, input, deliveries, state, \
         not_before_ms, last_error, updated_at_ms) VALUES ($1, $2, $3, '{}', 1, $4, $5, NULL, $5)",
    )
    .bind(id)
    .bind(&who.tenant_id)
    .bind(agent)
    .bind(state)
    .bind(due_ms)
    .execute(ctl.state.db.pool())
    .await
    .expect("its queue row");
}

/// Upload `bytes` and create a main agent with `grants` (retrying while the
/// node has not registered yet): the agent.
pub async fn create_agent(
    ctl: &Control,
    token: &str,
    name: &str,
    bytes: &[u8],
    grants: Value,
) -> Value {
    let resp = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(token)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("upload");
    assert!(resp.status().is_success());
    let component: Value = resp.json().await.expect("json");
    let body = json!({ "name": name, "kind": "main", "component": component["sha256"],
                       "grants": grants });
    eventually(
        "the node to take the agent",
        Duration::from_secs(30),
        || async {
            let (status, agent) = ctl
                .call(Method::POST, "/v1/agents", Some(token), Some(body.clone()))
                .await;
            if status == StatusCode::CREATED {
                return Some(agent);
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{agent}");
            None
        },
    )
    .await
}

/// A node in this process, `node_id`, registered with `ctl`, its state
/// under the test's directory in `node/`; `extra` is more of its config
/// (tables only).
pub async fn start_node_in_process(
    ctl: &Control,
    node_id: &str,
    extra: &str,
) -> delta_node::server::RunningNode {
    start_node_in(ctl, "node", node_id, extra).await
}

/// [`start_node_in_process`] with its state in `subdir` of the test's
/// directory (for tests with more than one node).
pub async fn start_node_in(
    ctl: &Control,
    subdir: &str,
    node_id: &str,
    extra: &str,
) -> delta_node::server::RunningNode {
    start_node_reporting_to(ctl, subdir, node_id, &ctl.url, extra).await
}

/// [`start_node_in`] with the node talking to the control plane at
/// `control_url` (another replica of `ctl`'s) for its heartbeats, usage and
/// capabilities.
pub async fn start_node_reporting_to(
    ctl: &Control,
    subdir: &str,
    node_id: &str,
    control_url: &str,
    extra: &str,
) -> delta_node::server::RunningNode {
    let dir = ctl.dir.path().join(subdir);
    std::fs::create_dir_all(&dir).expect("node dir");
    write_secret(&dir.join("token"), &node_api_token(node_id));
    write_secret(&dir.join("credential"), &ctl.node_credential(node_id).await);
    let config: delta_node::config::NodeConfig = toml::from_str(&format!(
        r#"
node_id = "{node_id}"
listen = "127.0.0.1:0"
state_dir = "{state}"
token_file = "{token}"
[control_plane]
url = "{url}"
token_file = "{credential}"
heartbeat_secs = 1
{extra}"#,
        state = dir.join("state").display(),
        token = dir.join("token").display(),
        credential = dir.join("credential").display(),
        url = control_url,
    ))
    .expect("node config");
    let options = delta_node::server::ServeOptions {
        compile: None,
        config_path: None,
        overrides: Default::default(),
    };
    let node = delta_node::server::start(config, &options)
        .await
        .expect("node");
    // A node started again listens on a new port, and a heartbeat cannot
    // move a node's URL: the harness, as the operator, gives it (as
    // `delta nodes set-url` would).
    let (status, answer) = ctl
        .call(
            Method::PATCH,
            &format!("/v1/operator/nodes/{node_id}"),
            Some(&ctl.operator_token().await),
            Some(json!({ "url": node.url() })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "setting {node_id}'s URL: {answer}");
    node
}

/// A database on the test PostgreSQL server that lives as long as this
/// guard: dropping it drops the database, so a suite run does not leave a
/// hundred databases (about 10 MB each) on the CI machine's disk.
pub struct TestDatabase {
    /// URL of the fresh database.
    pub url: String,
    admin: String,
    name: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        use sqlx::Connection;
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // a thread with its own runtime does the work. FORCE ends the
        // connections the control plane's pool still holds.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("dropping test database {}: {e}", self.name);
        }
    }
}

/// Create a fresh database on the test server; it is dropped with the guard.
pub async fn fresh_postgres_database() -> TestDatabase {
    use sqlx::Connection;
    let admin = std::env::var("DELTA_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "DELTA_TEST_POSTGRES_URL is not set: the API suite runs on PostgreSQL too. \
             Start a server and set it to a role that may create databases, e.g. \
             postgres://delta:delta@127.0.0.1:5432/delta (see .ci/run)"
        )
    });
    let name = format!("delta_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("connecting to {admin}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .expect("a database URL with a path");
    TestDatabase {
        url: format!("{base}/{name}"),
        admin,
        name,
    }
}

/// A component the upload's precheck accepts (its only export is `run`),
/// distinct per `tag` (a custom section), for suites whose nodes are fakes
/// that never compile it.
pub fn fake_component(tag: &str) -> Vec<u8> {
    let mut bytes = wat::parse_str(r#"(component (type $run (func)) (export "run" (type $run)))"#)
        .expect("valid wat");
    // A custom section (id 0) named `delta-test` carrying the tag.
    let name = b"delta-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    bytes.push(0x00);
    let mut size = payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&payload);
    bytes
}
