//! The fleet: node registration by heartbeat, usage ingestion, placement,
//! and the monitor that marks silent nodes down and moves their agents.
//!
//! Nodes authenticate with their own credential ([`crate::nodeauth`]): a
//! node is enrolled by an operator, and its heartbeat (for its own id only)
//! updates it (`capacity`, `load`) and marks it up. Its URL is the one given
//! at enrolment or by its first heartbeat; only an operator changes it
//! ([`crate::node_enrolment`]).
//!
//! # Placement
//! An agent goes to the node that is up (and heard from within
//! `node_heartbeat_timeout_secs`) with the smallest `load / max(capacity, 1)`,
//! ties broken by fewest agents, then by id.
//!
//! # The monitor ([`spawn_monitor`])
//! Every 500 ms it:
//! 1. marks nodes without a heartbeat for `node_heartbeat_timeout_secs` down
//!    (not during the first timeout after it started, so that a restarted
//!    control plane does not declare the whole fleet dead before it had a
//!    chance to hear from it) and sets `delta_control_nodes_up`;
//! 2. re-places agents whose node is down onto the best node that is up:
//!    component pushed, agent deployed with its limits and grants, paused if
//!    it was, then `agents.node_id` moved, only if the agent did not change
//!    meanwhile (otherwise it is redone on the next tick), and audited as
//!    `agent_moved`;
//! 3. reconciles a node when it is (again) up, and every minute: deployments
//!    of agents that the database assigns to another node (left behind on a
//!    node that was down while its agents moved, or deleted while it was
//!    unreachable) are deleted from it, and agents assigned to it that it
//!    does not hold, or holds with another spec than
//!    [`crate::templates::desired_spec`] (a redeploy after a template or
//!    recipient change that did not reach it), are deployed again. Only ids
//!    with the `agt_` prefix are touched, and a deployment the database does
//!    not know at all is deleted only once it is [`STALE_GRACE`] old,
//!    because an agent being created is deployed a moment before it is
//!    stored.
//!
//! A node that comes back keeps no agent that moved away: the agents stay
//! where they were re-placed (moving them back would interrupt them again).
//! Runs accepted by a node that died stay `queued`/`running` here until the
//! node comes back and reports them (it records them as cancelled on
//! restart).
//!
//! There is one monitor per control plane process; two processes sharing a
//! database would both re-place, and the conditional update lets one win
//! (the loser's copy is then stale and removed by reconciliation).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use delta_http::{ApiError, JsonBody};
use delta_node_api::RunUsage;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row as _;
use tokio::time::Instant;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agents::{self, AGENT_COLUMNS, Agent};
use crate::app::AppState;
use crate::audit;
use crate::auth::Principal;
use crate::db::now_ms;
use crate::nodeauth::{
    NodeAuth, check_node_url, require_self, require_usage_here, valid_node_id, valid_node_url,
};
use crate::nodeclient::NodeClient;
use crate::pagination::{Page, PageQuery};

/// How often the monitor looks.
pub const MONITOR_INTERVAL: Duration = Duration::from_millis(500);
/// How often an up node is reconciled even without a status change.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(60);
/// Wait before reconciling again a node that failed it.
const RECONCILE_RETRY: Duration = Duration::from_secs(5);
/// Age (node clock) before a deployment unknown to the database is deleted.
pub const STALE_GRACE: Duration = Duration::from_secs(120);
/// Agents re-placed per tick at most.
const REPLACE_BATCH: i64 = 100;
/// Nodes tried per agent and tick when re-placing.
const REPLACE_ATTEMPTS: usize = 3;
/// Most records in one usage batch.
const MAX_USAGE_RECORDS: usize = 10_000;

// ---- shapes ----------------------------------------------------------------

/// Body of `POST /v1/nodes/heartbeat`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Heartbeat {
    /// The node's id (`node_id` in its configuration).
    pub node_id: String,
    /// Where the control plane reaches it (`http(s)://host:port`).
    pub url: String,
    /// Execution slots.
    pub capacity: u64,
    /// Runs executing or queued.
    pub load: u64,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatAck {
    /// The node's id.
    pub node_id: String,
    /// `up`.
    pub status: String,
    /// Silence after which the node is marked down.
    pub heartbeat_timeout_secs: u64,
}

/// A node as `GET /v1/nodes` shows it (its URL is the operator's business
/// and is not shown).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Node {
    /// Node id.
    pub id: String,
    /// `up` or `down`.
    pub status: String,
    /// Execution slots.
    pub capacity: i64,
    /// Runs executing or queued at the last heartbeat.
    pub load: i64,
    /// Agents placed on it (all tenants).
    pub agents: i64,
    /// First heartbeat.
    pub registered_at_ms: i64,
    /// Last heartbeat.
    pub last_heartbeat_ms: i64,
}

/// Body of `POST /v1/nodes/usage` (the node's `UsageBatch`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
// Named apart from usage.rs's `UsageReport`: utoipa keeps one schema per
// name, and the collision once documented this body as GET /v1/usage's answer.
#[schema(as = NodeUsageReport)]
pub struct UsageReport {
    /// Stable for the same records (also the `Idempotency-Key`).
    pub batch_id: String,
    /// The reporting node.
    pub node_id: String,
    /// One record per finished run (`RunUsage` of the node API).
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<RunUsage>,
}

/// Answer to a usage batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageAck {
    /// The batch.
    pub batch_id: String,
    /// Records stored now.
    pub accepted: u64,
    /// Records already stored (a resent batch or record).
    pub duplicates: u64,
    /// Records that cannot be counted (no run id, or an agent of another
    /// tenant than the record claims); logged and dropped.
    #[serde(default)]
    pub rejected: u64,
}

pub use crate::nodeclient::Target;

// ---- routes ----------------------------------------------------------------

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(ingest_usage))
        .routes(routes!(list_nodes))
}

fn validate_node(hb: &Heartbeat) -> Result<(), ApiError> {
    if !valid_node_id(&hb.node_id) {
        return Err(ApiError::invalid(
            "node_id must be 1-128 characters of letters, digits, '-', '_', '.', ':'",
        ));
    }
    if !valid_node_url(&hb.url) {
        return Err(ApiError::invalid(
            "url must be an http(s) URL with a host and no credentials",
        ));
    }
    Ok(())
}

/// A node's heartbeat: registers it or updates it, and marks it up.
#[utoipa::path(
    post,
    path = "/v1/nodes/heartbeat",
    tag = "nodes",
    request_body = Heartbeat,
    responses(
        (status = 200, description = "Recorded", body = HeartbeatAck),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`wrong_node`: the credential is another node's"),
        (status = 409, description = "`node_url_conflict`: the node is enrolled at another URL (an operator changes it)"),
        (status = 422, description = "Malformed node id or URL"),
    ),
    security(("bearer" = []))
)]
async fn heartbeat(
    State(state): State<AppState>,
    node: NodeAuth,
    JsonBody(hb): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatAck>, ApiError> {
    validate_node(&hb)?;
    require_self(&node, &hb.node_id)?;
    check_node_url(&state, &hb.url)?;
    let now = now_ms();
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    // A node's URL does not move by heartbeat, up or down (a stolen
    // credential could otherwise point the node's agents, runs and log
    // reads at its thief, at once or after the node's next restart): it is
    // given at enrolment or by the first heartbeat of a node enrolled
    // without one, and changed only by an operator
    // (`PATCH /v1/operator/nodes/{id}`). The row exists from enrolment: the
    // credential proves it was enrolled.
    let changed = sqlx::query(
        "INSERT INTO nodes (id, url, capacity, load, status, registered_at_ms, last_heartbeat_ms) \
         VALUES ($1, $2, $3, $4, 'up', $5, $5) \
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, capacity = excluded.capacity, \
             load = excluded.load, status = 'up', last_heartbeat_ms = excluded.last_heartbeat_ms \
         WHERE nodes.url = excluded.url OR nodes.url = ''",
    )
    .bind(&hb.node_id)
    .bind(hb.url.trim_end_matches('/'))
    .bind(clamp(hb.capacity))
    .bind(clamp(hb.load))
    .bind(now)
    .execute(state.db.pool())
    .await
    .map_err(ApiError::internal)?
    .rows_affected();
    if changed == 0 {
        return Err(ApiError::conflict(
            "node_url_conflict",
            "this node id is enrolled at another URL; only an operator changes it \
             (PATCH /v1/operator/nodes/{id}, delta nodes set-url ID URL)",
        ));
    }
    Ok(Json(HeartbeatAck {
        node_id: hb.node_id,
        status: "up".into(),
        heartbeat_timeout_secs: state.config.node_heartbeat_timeout_secs,
    }))
}

/// Usage of finished runs, from a node's reporter.
///
/// Stored before the answer; deduplicated by run id, so a resent (or
/// concurrently sent) batch counts each run once. The matching run, if the
/// control plane recorded it, is marked finished with this usage (also when
/// the record is a duplicate: marking is idempotent).
#[utoipa::path(
    post,
    path = "/v1/nodes/usage",
    tag = "nodes",
    request_body = UsageReport,
    params(("Idempotency-Key" = Option<String>, Header, description = "The batch id")),
    responses(
        (status = 200, description = "Stored", body = UsageAck),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`wrong_node`, `agent_not_here` (details.agent_id): nothing stored"),
        (status = 422, description = "`unknown_agent` (details.agent_id): nothing stored"),
    ),
    security(("bearer" = []))
)]
async fn ingest_usage(
    State(state): State<AppState>,
    node: NodeAuth,
    JsonBody(mut batch): JsonBody<UsageReport>,
) -> Result<Json<UsageAck>, ApiError> {
    require_self(&node, &batch.node_id)?;
    if batch.records.len() > MAX_USAGE_RECORDS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("at most {MAX_USAGE_RECORDS} records per batch"),
        ));
    }
    require_usage_here(&state, &node, &batch.records).await?;
    let retention_ms =
        i64::try_from(state.config.record_retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let oldest = crate::db::now_ms().saturating_sub(retention_ms);
    let done = crate::usage::ingest(
        &state.db,
        &batch.node_id,
        &batch.batch_id,
        &mut batch.records,
        oldest,
    )
    .await
    .map_err(ApiError::internal)?;
    tracing::debug!(batch = %batch.batch_id, node = %batch.node_id,
        accepted = done.accepted, duplicates = done.duplicates, rejected = done.rejected, "usage");
    Ok(Json(UsageAck {
        batch_id: batch.batch_id,
        accepted: done.accepted,
        duplicates: done.duplicates,
        rejected: done.rejected,
    }))
}

/// The fleet (platform operators only: nodes serve every tenant, and a
/// tenant has no business knowing the others' placement). Shows what
/// placement uses, no URLs.
#[utoipa::path(
    get,
    path = "/v1/nodes",
    tag = "nodes",
    params(PageQuery),
    responses(
        (status = 200, description = "A page, by registration", body = Page<Node>),
        (status = 403, description = "`operator_only`"),
    ),
    security(("bearer" = []))
)]
async fn list_nodes(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Node>>, ApiError> {
    principal.require_operator()?;
    principal.require_scope("agents:read")?;
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let rows = sqlx::query(
        "SELECT n.id, n.status, n.capacity, n.load, n.registered_at_ms, n.last_heartbeat_ms, \
                (SELECT COUNT(*) FROM agents a WHERE a.node_id = n.id) AS agents \
         FROM nodes n WHERE (n.registered_at_ms, n.id) > ($1, $2) \
         ORDER BY n.registered_at_ms, n.id LIMIT $3",
    )
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(|row| {
            Ok(Node {
                id: row.try_get("id")?,
                status: row.try_get("status")?,
                capacity: row.try_get("capacity")?,
                load: row.try_get("load")?,
                agents: row.try_get("agents")?,
                registered_at_ms: row.try_get("registered_at_ms")?,
                last_heartbeat_ms: row.try_get("last_heartbeat_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(items, limit, |n| {
        (n.registered_at_ms, n.id.clone())
    })))
}

// ---- placement -------------------------------------------------------------

/// A node considered for placement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    target: Target,
    capacity: i64,
    load: i64,
    agents: i64,
}

/// Least loaded first: `load / max(capacity, 1)` (compared exactly, by
/// cross-multiplying), then fewest agents, then id.
fn rank(mut nodes: Vec<Candidate>) -> Vec<Target> {
    nodes.sort_by(|a, b| {
        let lhs = i128::from(a.load.max(0)) * i128::from(b.capacity.max(1));
        let rhs = i128::from(b.load.max(0)) * i128::from(a.capacity.max(1));
        lhs.cmp(&rhs)
            .then(a.agents.cmp(&b.agents))
            .then_with(|| a.target.id.cmp(&b.target.id))
    });
    nodes.into_iter().map(|c| c.target).collect()
}

/// Nodes that may take an agent, best first: up, and heard from within the
/// heartbeat timeout (the monitor may not have marked a silent one yet).
pub async fn candidates(state: &AppState) -> Result<Vec<Target>, sqlx::Error> {
    let fresh_after = now_ms() - timeout_ms(state);
    let rows = sqlx::query(
        "SELECT n.id, n.url, n.capacity, n.load, \
                (SELECT COUNT(*) FROM agents a WHERE a.node_id = n.id) AS agents \
         FROM nodes n WHERE n.status = 'up' AND n.last_heartbeat_ms >= $1",
    )
    .bind(fresh_after)
    .fetch_all(state.db.pool())
    .await?;
    let nodes = rows
        .iter()
        .map(|row| {
            Ok(Candidate {
                target: Target {
                    id: row.try_get("id")?,
                    url: row.try_get("url")?,
                },
                capacity: row.try_get("capacity")?,
                load: row.try_get("load")?,
                agents: row.try_get("agents")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(rank(nodes))
}

/// Node `id` if it is up.
pub async fn up_node(state: &AppState, id: &str) -> Result<Option<Target>, sqlx::Error> {
    let row = sqlx::query("SELECT url FROM nodes WHERE id = $1 AND status = 'up'")
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?;
    row.map(|r| {
        Ok(Target {
            id: id.to_owned(),
            url: r.try_get("url")?,
        })
    })
    .transpose()
}

fn timeout_ms(state: &AppState) -> i64 {
    i64::try_from(
        state
            .config
            .node_heartbeat_timeout_secs
            .saturating_mul(1000),
    )
    .unwrap_or(i64::MAX)
}

// ---- the monitor -----------------------------------------------------------

/// Marks silent nodes down, re-places their agents and reconciles nodes
/// (see the module documentation). Runs until aborted.
pub fn spawn_monitor(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut monitor = Monitor::new();
        let mut tick = tokio::time::interval(MONITOR_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = monitor.tick(&state).await {
                tracing::warn!(error = %e, "node monitor");
            }
        }
    })
}

/// What the monitor remembers between ticks.
struct Monitor {
    started: Instant,
    /// Whether each node was up at the last tick.
    up: HashMap<String, bool>,
    /// When each node was last reconciled.
    reconciled: HashMap<String, Instant>,
    /// Agents whose re-placement failed: when to try again, and how often
    /// it failed.
    retry: HashMap<String, (Instant, u32)>,
    /// Whether "no node to re-place onto" was logged (once per outage).
    stranded_logged: bool,
}

impl Monitor {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            up: HashMap::new(),
            reconciled: HashMap::new(),
            retry: HashMap::new(),
            stranded_logged: false,
        }
    }

    async fn tick(&mut self, state: &AppState) -> Result<(), sqlx::Error> {
        let timeout = Duration::from_secs(state.config.node_heartbeat_timeout_secs);
        if self.started.elapsed() >= timeout {
            let down: Vec<String> = sqlx::query_scalar(
                "UPDATE nodes SET status = 'down' \
                 WHERE status = 'up' AND last_heartbeat_ms < $1 RETURNING id",
            )
            .bind(now_ms() - timeout_ms(state))
            .fetch_all(state.db.pool())
            .await?;
            for id in down {
                tracing::warn!(node = %id, "node silent: marked down");
            }
        }
        let rows = sqlx::query("SELECT id, url, status FROM nodes")
            .fetch_all(state.db.pool())
            .await?;
        let mut up_now = Vec::new();
        let mut statuses = HashMap::new();
        for row in &rows {
            let id: String = row.try_get("id")?;
            let status: String = row.try_get("status")?;
            let is_up = status == "up";
            if is_up {
                up_now.push(Target {
                    id: id.clone(),
                    url: row.try_get("url")?,
                });
            }
            statuses.insert(id, is_up);
        }
        state
            .metrics
            .nodes_up
            .set(i64::try_from(up_now.len()).unwrap_or(i64::MAX));

        self.replace_orphans(state).await?;

        for node in &up_now {
            if !self.up.get(&node.id).copied().unwrap_or(false) {
                tracing::info!(node = %node.id, "node up");
                self.reconciled.remove(&node.id);
            }
            let due = self
                .reconciled
                .get(&node.id)
                .is_none_or(|at| at.elapsed() >= RECONCILE_EVERY);
            if due {
                match reconcile(state, node).await {
                    Ok(()) => {
                        self.reconciled.insert(node.id.clone(), Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!(node = %node.id, error = %e, "reconciling a node");
                        // Again in a few seconds rather than at every tick.
                        let retry = Instant::now()
                            .checked_sub(RECONCILE_EVERY - RECONCILE_RETRY)
                            .unwrap_or_else(Instant::now);
                        self.reconciled.insert(node.id.clone(), retry);
                    }
                }
            }
        }
        self.up = statuses;
        Ok(())
    }

    /// Move agents off nodes that are down (or gone) onto the best node up.
    async fn replace_orphans(&mut self, state: &AppState) -> Result<(), sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents \
             WHERE node_id IS NULL OR node_id NOT IN (SELECT id FROM nodes WHERE status = 'up') \
             ORDER BY created_at_ms, id LIMIT $1"
        ))
        .bind(REPLACE_BATCH)
        .fetch_all(state.db.pool())
        .await?;
        if rows.is_empty() {
            self.stranded_logged = false;
            self.retry.clear();
            return Ok(());
        }
        for row in &rows {
            let agent = agents::agent_from_row(row)?;
            if self
                .retry
                .get(&agent.id)
                .is_some_and(|(at, _)| *at > Instant::now())
            {
                continue;
            }
            let targets = candidates(state).await?;
            if targets.is_empty() {
                if !self.stranded_logged {
                    tracing::error!(
                        agents = rows.len(),
                        "agents on down nodes and no node up to move them to"
                    );
                    self.stranded_logged = true;
                }
                return Ok(());
            }
            self.stranded_logged = false;
            match replace(state, &agent, &targets).await {
                Ok(()) => {
                    self.retry.remove(&agent.id);
                }
                Err(e) => {
                    let failures = self.retry.get(&agent.id).map_or(0, |(_, n)| *n) + 1;
                    let backoff = Duration::from_secs(1 << failures.min(6)).min(RECONCILE_EVERY);
                    tracing::warn!(agent = %agent.id, error = %e, ?backoff, "re-placing an agent");
                    self.retry
                        .insert(agent.id.clone(), (Instant::now() + backoff, failures));
                }
            }
        }
        Ok(())
    }
}

/// Deploy `agent` on the first of `targets` that takes it, then record the
/// move unless the agent changed meanwhile.
async fn replace(state: &AppState, agent: &Agent, targets: &[Target]) -> Result<(), String> {
    let mut last_error = String::from("no node tried");
    for target in targets.iter().take(REPLACE_ATTEMPTS) {
        match agents::deploy(state, target, agent).await {
            Ok(_) => {
                let moved = sqlx::query(
                    "UPDATE agents SET node_id = $1, updated_at_ms = $2 \
                     WHERE id = $3 AND updated_at_ms = $4 AND COALESCE(node_id, '') = $5",
                )
                .bind(&target.id)
                .bind(now_ms().max(agent.updated_at_ms + 1))
                .bind(&agent.id)
                .bind(agent.updated_at_ms)
                .bind(agent.node_id.clone().unwrap_or_default())
                .execute(state.db.pool())
                .await
                .map_err(|e| e.to_string())?;
                if moved.rows_affected() == 0 {
                    // Deleted or changed meanwhile: take the copy back; if
                    // it still needs a node, the next tick redoes it.
                    let _ = NodeClient::new(state).delete_agent(target, &agent.id).await;
                    return Ok(());
                }
                tracing::info!(
                    agent = %agent.id,
                    from = agent.node_id.as_deref().unwrap_or("-"),
                    to = %target.id,
                    "agent re-placed"
                );
                // Best effort: the move happened whether or not its trace
                // is written (and the monitor has no request to fail).
                audit::record(
                    &state.db,
                    Some(&agent.tenant_id),
                    None,
                    "agent_moved",
                    json!({ "agent_id": agent.id, "from": agent.node_id, "to": target.id }),
                    None,
                )
                .await;
                let moved = Agent {
                    node_id: Some(target.id.clone()),
                    ..agent.clone()
                };
                crate::deployments::record(&state.db, &moved, crate::deployments::Reason::Moved)
                    .await;
                return Ok(());
            }
            Err(e) if e.is_unreachable() => last_error = e.to_string(),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(last_error)
}

/// Make `node` hold exactly the agents assigned to it (see the module
/// documentation for what is touched).
async fn reconcile(state: &AppState, node: &Target) -> Result<(), String> {
    let client = NodeClient::new(state);
    // The node first, the database second: an agent deleted in between is
    // then already gone from the database (deletion removes the row before
    // the deployment), so it is never redeployed.
    let deployed = client.list_agents(node).await.map_err(|e| e.to_string())?;
    let rows = sqlx::query(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE node_id = $1"
    ))
    .bind(&node.id)
    .fetch_all(state.db.pool())
    .await
    .map_err(|e| e.to_string())?;
    let assigned = rows
        .iter()
        .map(agents::agent_from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let assigned_ids: HashSet<&str> = assigned.iter().map(|a| a.id.as_str()).collect();
    let prefix = format!("{}_", agents::ID_PREFIX);
    let grace_ms = i64::try_from(STALE_GRACE.as_millis()).unwrap_or(i64::MAX);
    for d in &deployed {
        if !d.id.starts_with(&prefix) || assigned_ids.contains(d.id.as_str()) {
            continue;
        }
        let known: Option<Option<String>> =
            sqlx::query_scalar("SELECT node_id FROM agents WHERE id = $1")
                .bind(&d.id)
                .fetch_optional(state.db.pool())
                .await
                .map_err(|e| e.to_string())?;
        let stale = known.is_some() || d.updated_at_ms < now_ms() - grace_ms;
        if !stale {
            continue;
        }
        match client.delete_agent(node, &d.id).await {
            Ok(()) => tracing::info!(node = %node.id, agent = %d.id, "stale deployment deleted"),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let held: HashMap<&str, &delta_node_api::AgentRecord> =
        deployed.iter().map(|d| (d.id.as_str(), d)).collect();
    for agent in &assigned {
        // Missing, or held with another spec (a redeploy after a template
        // or recipient change that failed, or a change from before it).
        let what = match held.get(agent.id.as_str()) {
            None => "missing deployment restored",
            Some(d) => match crate::templates::desired_spec(&state.db, agent).await {
                Ok(spec) if spec == d.spec => continue,
                Ok(_) => "outdated deployment updated",
                Err(e) => return Err(e.to_string()),
            },
        };
        match agents::redeploy_current(state, node, &agent.id).await {
            Ok(true) => tracing::info!(node = %node.id, agent = %agent.id, "{what}"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(node = %node.id, agent = %agent.id, error = %e, "restoring a deployment")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, capacity: i64, load: i64, agents: i64) -> Candidate {
        Candidate {
            target: Target {
                id: id.into(),
                url: format!("http://{id}"),
            },
            capacity,
            load,
            agents,
        }
    }

    fn ids(v: Vec<Target>) -> Vec<String> {
        v.into_iter().map(|t| t.id).collect()
    }

    #[test]
    fn placement_prefers_the_least_loaded_then_the_emptiest() {
        // 3/8 < 1/2: the bigger node wins despite its higher load.
        assert_eq!(
            ids(rank(vec![c("a", 2, 1, 0), c("b", 8, 3, 9)])),
            ["b", "a"]
        );
        // Equal ratios (0): fewer agents first, then id.
        assert_eq!(
            ids(rank(vec![
                c("a", 4, 0, 2),
                c("b", 4, 0, 1),
                c("c", 4, 0, 1)
            ])),
            ["b", "c", "a"]
        );
        // Capacity 0 counts as 1; huge values do not overflow.
        assert_eq!(
            ids(rank(vec![c("a", 0, 1, 0), c("b", i64::MAX, i64::MAX, 0)])),
            ["a", "b"]
        );
    }

    #[test]
    fn node_ids_and_urls_are_validated() {
        let hb = |id: &str, url: &str| Heartbeat {
            node_id: id.into(),
            url: url.into(),
            capacity: 1,
            load: 0,
        };
        assert!(validate_node(&hb("node-1", "http://127.0.0.1:7421")).is_ok());
        assert!(validate_node(&hb("", "http://x")).is_err());
        assert!(validate_node(&hb("a/b", "http://x")).is_err());
        assert!(validate_node(&hb("n", "file:///etc")).is_err());
        assert!(validate_node(&hb("n", "http://u:p@x")).is_err());
    }
}
