//! Runs: named by the control plane (`run_...`, the id the guest sees as
//! `task.run-id` on every delivery), queued durably (`crate::dispatch`) and
//! delivered to the node hosting the agent.
//!
//! A run is inserted with its queue row before its node is called, and
//! delivered inline: a run whose node is lost later goes back to the queue
//! and is delivered to the agent's new node under the same id; one no node
//! took after `[runs] max_deliveries` is `dead` (`GET /v1/runs?status=dead`
//! lists them with `deliveries` and `last_error`; `POST
//! /v1/runs/{id}/retry` puts one back).
//!
//! The control plane answers what the node answered (202 with the run id,
//! or with `?wait=true` 200 with the finished run), passing the node's 409
//! (`agent_paused`) and 429 (`queue_full`, with `Retry-After`) through; a
//! node that cannot be reached is 503 `node_unavailable`. A run's row is
//! brought up to date by usage reports (`POST /v1/nodes/usage`) and by
//! `GET /v1/runs/{id}`, which asks the node. A node that answers 404 for
//! the agent (it lost its state) gets the deployment back and the run is
//! submitted once more.
//!
//! Runs that no caller is waiting to retry (schedule ticks and inbound
//! webhooks: [`RunTrigger::queues_when_busy`]) are never refused for a
//! passing reason: when their node is down, unreachable, or answers 429 or
//! 503, the run stays `queued` in the run queue and the dispatcher delivers
//! it with backoff (dead after `[runs] max_deliveries`, as any queued run),
//! and the trigger gets the run id. An API caller gets the node's answer
//! and retries itself.
//!
//! Roles: `member`, with `runs:write` to submit and `runs:read` to read.
//!
//! What is kept where: the control plane keeps each run's status, the
//! outcome's name (`{"status": "completed"}`) and its usage; the output
//! and the logs stay on the node that ran it, which deletes them after its
//! retention (24 h by default), so the control plane never keeps them
//! longer. `GET /v1/runs/{id}` and `GET /v1/runs/{id}/logs` fetch them from
//! the node while it has them; lists show what is kept here.
//!
//! Times: `created_at_ms` is the control plane's clock (lists are ordered by
//! it); `started_at_ms`, `finished_at_ms` and `expires_at_ms` are the
//! node's.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use delta_http::{ApiError, JsonBody, record_ids};
use delta_node_api::{RunRecord, RunStatus, RunUsage};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agents::{Agent, hosting_node, load_agent, redeploy_current};
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::dispatch::RunQueue as _;
use crate::nodeclient::{
    DEFAULT_RUN_TIMEOUT, NodeCallError, NodeClient, Submitted, node_unavailable,
};
use crate::pagination::{Page, PageQuery};

/// A run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// The run id (named by the control plane; the guest's `task.run-id`).
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The agent.
    pub agent_id: String,
    /// The node it was (last) delivered to.
    pub node_id: String,
    /// `queued`, `running`, `finished`, or `dead`: no node took it after
    /// `[runs] max_deliveries` deliveries (see `last_error`; `POST
    /// /v1/runs/{id}/retry`).
    pub status: String,
    /// Deliveries to a node so far (more than 1: retried, or re-queued
    /// after its node was lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<i64>,
    /// Why the last delivery failed (`node_lost` after a re-queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// How it ended: `{"status": "completed", "output": ...}` and so on in
    /// answers that come from the node; only `{"status": ...}` in lists and
    /// once the node no longer has the run.
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<Value>,
    /// Log lines, in answers that come from the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub logs: Option<Value>,
    /// What it used (the node's `RunUsage`), once finished.
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
    /// Accepted at (control plane clock).
    pub created_at_ms: i64,
    /// Started executing at (node clock), in answers that come from the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    /// Ended at (node clock).
    pub finished_at_ms: Option<i64>,
    /// When the node deletes its output and logs, in answers that come from
    /// the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// What started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<RunTrigger>,
}

/// What started a run: kept with it, shown by `GET /v1/runs/{id}` and
/// carried by its result webhook (`run.completed`, `run.failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunTrigger {
    /// `api` (`POST /v1/agents/{id}/runs`), `schedule`, `webhook` (an
    /// inbound webhook), `agent` (another agent's message) or
    /// `bounty_attempt`.
    pub kind: String,
    /// The schedule (`sch_...`), inbound webhook (`whk_...`), message
    /// (`msg_...`, `GET /v1/agent-messages`) or attempt; none for `api`.
    #[serde(default)]
    pub id: Option<String>,
}

impl RunTrigger {
    /// A call of `POST /v1/agents/{id}/runs`.
    pub fn api() -> Self {
        Self {
            kind: "api".into(),
            id: None,
        }
    }

    /// A trigger of `kind` named `id`.
    pub fn of(kind: &str, id: &str) -> Self {
        Self {
            kind: kind.into(),
            id: Some(id.into()),
        }
    }

    /// Whether a run the node cannot take now stays queued (for the
    /// dispatcher) rather than being refused: a schedule's tick or an
    /// inbound webhook has nobody who would send it again, while an API
    /// caller or a bounty attempt is told and retries.
    pub fn queues_when_busy(&self) -> bool {
        matches!(self.kind.as_str(), "schedule" | "webhook")
    }
}

/// The 202 answer: accepted, not finished.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunAccepted {
    /// Run id (`GET /v1/runs/{id}`).
    pub id: String,
    /// `queued`.
    pub status: String,
}

/// Body of `POST /v1/agents/{id}/runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// The task input: any JSON value (default `{}`).
    #[serde(default = "empty_object")]
    pub input: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// Query of `POST /v1/agents/{id}/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Answer 200 with the finished run instead of 202.
    #[serde(default)]
    pub wait: bool,
}

/// `?agent_id=` and `?status=` of `GET /v1/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunFilter {
    /// Only this agent's runs.
    pub agent_id: Option<String>,
    /// Only runs in this status: `queued`, `running`, `finished`, `dead`.
    #[param(pattern = r"^(queued|running|finished|dead)$")]
    pub status: Option<String>,
}

/// The statuses a run can be in.
const STATUSES: [&str; 4] = ["queued", "running", "finished", "dead"];

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_run))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(run_logs))
        .routes(routes!(retry_run))
}

const RUN_COLUMNS: &str = "id, tenant_id, agent_id, node_id, status, outcome, usage, \
                           created_at_ms, finished_at_ms, trigger_kind, trigger_id";

/// What is read of a run: its row and its queue row's counters.
const READ_COLUMNS: &str = "id, tenant_id, agent_id, node_id, status, outcome, usage, \
                            created_at_ms, finished_at_ms, trigger_kind, trigger_id, \
                            deliveries, last_error";

/// Runs with their queue rows (a run from before the queue has none).
const RUNS_READ: &str = "(SELECT r.id, r.tenant_id, r.agent_id, r.node_id, r.status, \
                         r.outcome, r.usage, r.created_at_ms, r.finished_at_ms, \
                         r.trigger_kind, r.trigger_id, q.deliveries, q.last_error \
                         FROM runs r LEFT JOIN run_queue q ON q.run_id = r.id) runs_read";

fn run_from_row(row: &AnyRow) -> Result<Run, sqlx::Error> {
    let json = |name: &str| -> Result<Option<Value>, sqlx::Error> {
        let text: Option<String> = row.try_get(name)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| sqlx::Error::ColumnDecode {
                index: name.to_owned(),
                source: Box::new(e),
            })
        })
        .transpose()
    };
    Ok(Run {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        agent_id: row.try_get("agent_id")?,
        node_id: row.try_get("node_id")?,
        status: row.try_get("status")?,
        deliveries: row.try_get("deliveries")?,
        last_error: row.try_get("last_error")?,
        outcome: json("outcome")?,
        logs: None,
        usage: json("usage")?,
        created_at_ms: row.try_get("created_at_ms")?,
        started_at_ms: None,
        finished_at_ms: row.try_get("finished_at_ms")?,
        expires_at_ms: None,
        trigger: Some(RunTrigger {
            kind: row.try_get("trigger_kind")?,
            id: row.try_get("trigger_id")?,
        }),
    })
}

/// The view of a node's record, with what only the control plane knows.
fn run_from_record(record: RunRecord, node_id: &str, created_at_ms: i64) -> Run {
    Run {
        id: record.id,
        tenant_id: record.tenant_id,
        agent_id: record.agent_id,
        node_id: node_id.to_owned(),
        status: record.status.as_str().to_owned(),
        deliveries: None,
        last_error: None,
        outcome: record.outcome,
        logs: record.logs,
        // The usage without the result it carries for webhooks: the
        // outcome is shown (and kept) apart.
        usage: record
            .usage
            .map(|u| RunUsage { result: None, ..u })
            .and_then(|u| serde_json::to_value(u).ok())
            .filter(|u| !u.is_null()),
        created_at_ms,
        started_at_ms: record.started_at_ms,
        finished_at_ms: record.finished_at_ms,
        expires_at_ms: record.expires_at_ms,
        trigger: None,
    }
}

fn json_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

/// What is stored of an outcome: its name only (the output is the node's
/// to keep, and to delete after its retention).
fn outcome_name(v: &Option<Value>) -> Option<String> {
    v.as_ref()
        .map(|o| json!({ "status": o.get("status").cloned().unwrap_or(Value::Null) }).to_string())
}

/// Submit a run of an agent to its node.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/runs",
    tag = "runs",
    params(("id" = String, Path, description = "Agent id"), RunQuery),
    request_body = CreateRun,
    responses(
        (status = 202, description = "Accepted (see `Location`)", body = RunAccepted),
        (status = 200, description = "Finished (`?wait=true`)", body = Run),
        (status = 404, description = "No such agent in this tenant"),
        (status = 409, description = "`agent_paused`"),
        (status = 429, description = "`queue_full` (see `Retry-After`)"),
        (status = 503, description = "`node_unavailable` (see `Retry-After`)"),
    ),
    security(("bearer" = []))
)]
async fn create_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(query): Query<RunQuery>,
    JsonBody(body): JsonBody<CreateRun>,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:write")?;
    record_ids(None, Some(&agent_id), None);
    let agent = load_agent(&state, &principal.tenant_id, &agent_id).await?;
    Ok(
        start_run(&state, &agent, &body.input, query.wait, RunTrigger::api())
            .await?
            .into_response(),
    )
}

/// What [`start_run`] got from the node.
#[derive(Debug)]
pub(crate) enum Started {
    /// Queued: 202 with the run id (and `Location`).
    Accepted(RunAccepted),
    /// Finished within the wait: 200 with the run.
    Finished(Box<Run>),
}

impl Started {
    /// The run's id.
    pub(crate) fn run_id(&self) -> &str {
        match self {
            Self::Accepted(a) => &a.id,
            Self::Finished(run) => &run.id,
        }
    }
}

impl IntoResponse for Started {
    fn into_response(self) -> Response {
        match self {
            Self::Accepted(accepted) => {
                let location = HeaderValue::from_str(&format!("/v1/runs/{}", accepted.id)).ok();
                let mut response = (StatusCode::ACCEPTED, Json(accepted)).into_response();
                if let Some(v) = location {
                    response.headers_mut().insert(header::LOCATION, v);
                }
                response
            }
            Self::Finished(run) => Json(*run).into_response(),
        }
    }
}

/// Start a run of `agent` (already loaded for the caller's tenant) with
/// `input` on the node hosting it, waiting for its end when `wait`. The one
/// path every run takes: `POST /v1/agents/{id}/runs`, schedules and inbound
/// webhooks (`crate::triggers`), bounty attempts; `trigger` says which.
pub(crate) async fn start_run(
    state: &AppState,
    agent: &Agent,
    input: &Value,
    wait: bool,
    trigger: RunTrigger,
) -> Result<Started, ApiError> {
    let queues = trigger.queues_when_busy();
    let node = match hosting_node(state, agent).await {
        Ok(node) => Some(node),
        Err(e) if queues && e.status == StatusCode::SERVICE_UNAVAILABLE => None,
        Err(e) => return Err(e),
    };
    let timeout = agent
        .limits
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_RUN_TIMEOUT);
    // The run is named and stored before the node is called, so that it is
    // listed (and its usage finishes it) even if the answer never comes: a
    // `?wait=true` run can outlive the wait.
    let run_id = format!("run_{}", uuid::Uuid::now_v7().simple());
    record_ids(None, None, Some(&run_id));
    let pending = Run {
        id: run_id.clone(),
        tenant_id: agent.tenant_id.clone(),
        agent_id: agent.id.clone(),
        node_id: node
            .as_ref()
            .map(|n| n.id.clone())
            .or_else(|| agent.node_id.clone())
            .unwrap_or_default(),
        status: RunStatus::Queued.as_str().to_owned(),
        deliveries: None,
        last_error: None,
        outcome: None,
        logs: None,
        usage: None,
        created_at_ms: now_ms(),
        started_at_ms: None,
        finished_at_ms: None,
        expires_at_ms: None,
        trigger: Some(trigger),
    };
    insert_run(state, &pending).await?;
    // Its queue row: already out for delivery (inline, below); the
    // dispatcher only takes it if its node is lost.
    state
        .run_queue
        .enqueue_dispatched(
            &crate::dispatch::QueuedRun {
                run_id: run_id.clone(),
                tenant_id: agent.tenant_id.clone(),
                agent_id: agent.id.clone(),
                input: input.to_string(),
                deliveries: 1,
            },
            pending.created_at_ms,
        )
        .await
        .map_err(ApiError::internal)?;
    let Some(node) = node else {
        return keep_queued(state, &run_id, "node_unavailable: the agent's node is down").await;
    };
    let client = NodeClient::new(state);
    let submit = || client.create_run(&node, &agent.id, &run_id, input, wait, timeout);
    let submitted = match submit().await {
        // The node lost the deployment (its state was reset): restore it
        // and try once more.
        Err(e) if e.is_not_found() => {
            tracing::warn!(node = %node.id, agent = %agent.id, "node lacks the agent: redeploying");
            if let Err(e) = redeploy_current(state, &node, &agent.id).await {
                forget_run(state, &pending).await;
                return Err(e.to_api());
            }
            submit().await
        }
        other => other,
    };
    let submitted = match submitted {
        Ok(submitted) => submitted,
        Err(e) if queues && e.is_busy() => {
            return keep_queued(state, &run_id, &e.to_string()).await;
        }
        Err(e) => {
            // Refused or never delivered: the node has no such run. Timed
            // out or garbled: it may have, so the row stays for its usage.
            if matches!(
                e,
                NodeCallError::Refused { .. } | NodeCallError::Unreachable(_)
            ) {
                forget_run(state, &pending).await;
            }
            return Err(e.to_api());
        }
    };
    match submitted {
        Submitted::Queued { id, status } => {
            if id != run_id {
                // A node that names its own runs (an older version).
                forget_run(state, &pending).await;
                record_ids(None, None, Some(&id));
                let run = Run {
                    id: id.clone(),
                    status: status.as_str().to_owned(),
                    ..pending
                };
                insert_run(state, &run).await?;
            }
            Ok(Started::Accepted(RunAccepted {
                id,
                status: status.as_str().to_owned(),
            }))
        }
        Submitted::Finished(record) => {
            let mut run = run_from_record(*record, &node.id, pending.created_at_ms);
            run.trigger = pending.trigger.clone();
            if run.tenant_id != agent.tenant_id || run.agent_id != agent.id {
                forget_run(state, &pending).await;
                return Err(ApiError::internal(format!(
                    "node {} answered a run of another agent",
                    node.id
                )));
            }
            if run.id == run_id {
                store_status(state, &run).await?;
            } else {
                forget_run(state, &pending).await;
                insert_run(state, &run).await?;
            }
            Ok(Started::Finished(Box::new(run)))
        }
    }
}

/// Leave a run that its node could not take now (`why`) `pending` in the
/// run queue: the dispatcher delivers it after the first backoff, to
/// whichever node hosts the agent then. The trigger is answered 202 with
/// the run `queued`.
async fn keep_queued(state: &AppState, run_id: &str, why: &str) -> Result<Started, ApiError> {
    let cfg = &state.config.runs;
    let now = now_ms();
    let retry_at = (cfg.max_deliveries > 1).then(|| {
        let wait = crate::dispatch::backoff_ms(1, cfg.retry_base_ms, cfg.retry_max_ms);
        now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX))
    });
    tracing::info!(
        run = run_id,
        reason = why,
        "the node cannot take the run now: it stays queued"
    );
    state
        .run_queue
        .failed(run_id, why, retry_at, now)
        .await
        .map_err(ApiError::internal)?;
    Ok(Started::Accepted(RunAccepted {
        id: run_id.to_owned(),
        status: RunStatus::Queued.as_str().to_owned(),
    }))
}

/// Delete a run stored before its node was called, when the node turned
/// out not to have it. Best effort: a left-over row only lists a run that
/// never started.
async fn forget_run(state: &AppState, run: &Run) {
    let mut deleted = Ok(());
    for table in ["run_queue WHERE run_id", "runs WHERE id"] {
        let done = sqlx::query(&format!("DELETE FROM {table} = $1 AND tenant_id = $2"))
            .bind(&run.id)
            .bind(&run.tenant_id)
            .execute(state.db.pool())
            .await;
        if let Err(e) = done {
            deleted = Err(e);
        }
    }
    if let Err(e) = deleted {
        tracing::warn!(run = %run.id, error = %e, "forgetting a run the node refused");
    }
}

/// The node's account of a run's progress (never over a finished one: its
/// usage may have got there first). The update that finishes the run
/// queues its result webhook, in the same transaction, with the node's
/// full outcome (its output included).
async fn store_status(state: &AppState, run: &Run) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let changed = sqlx::query(
        "UPDATE runs SET status = $1, outcome = $2, usage = $3, finished_at_ms = $4 \
         WHERE id = $5 AND tenant_id = $6 AND status <> 'finished'",
    )
    .bind(&run.status)
    .bind(outcome_name(&run.outcome))
    .bind(json_text(&run.usage))
    .bind(run.finished_at_ms)
    .bind(&run.id)
    .bind(&run.tenant_id)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?
    .rows_affected();
    if run.status == RunStatus::Finished.as_str() {
        crate::dispatch::sql::mark_finished(&mut tx, &run.id, &run.tenant_id)
            .await
            .map_err(ApiError::internal)?;
        if changed == 1 {
            crate::run_end::ended(
                &mut tx,
                &mut crate::webhooks::Endpoints::default(),
                &run.tenant_id,
                &run.id,
                crate::webhooks::RunEnd::Finished(run.outcome.as_ref()),
                now_ms(),
            )
            .await
            .map_err(ApiError::internal)?;
        }
    }
    tx.commit().await.map_err(ApiError::internal)?;
    crate::dispatch::wake();
    Ok(())
}

/// Record a run the node accepted, folding in usage that was reported
/// before the row existed (a fast run's report can beat the answer). The
/// row is committed before the usage is looked up, and usage ingestion
/// commits its records before it marks runs: whichever comes second sees
/// the other's write.
async fn insert_run(state: &AppState, run: &Run) -> Result<(), ApiError> {
    sqlx::query(&format!(
        "INSERT INTO runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO NOTHING"
    ))
    .bind(&run.id)
    .bind(&run.tenant_id)
    .bind(&run.agent_id)
    .bind(&run.node_id)
    .bind(&run.status)
    .bind(outcome_name(&run.outcome))
    .bind(json_text(&run.usage))
    .bind(run.created_at_ms)
    .bind(run.finished_at_ms)
    .bind(run.trigger.as_ref().map_or("api", |t| t.kind.as_str()))
    .bind(run.trigger.as_ref().and_then(|t| t.id.as_deref()))
    .execute(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    if run.status != "finished" {
        let reported: Option<String> =
            sqlx::query_scalar("SELECT payload FROM usage_records WHERE run_id = $1")
                .bind(&run.id)
                .fetch_optional(state.db.pool())
                .await
                .map_err(ApiError::internal)?;
        if let Some(mut usage) = reported.and_then(|p| serde_json::from_str::<RunUsage>(&p).ok()) {
            // Stored records carry no result (`usage::ingest` takes it out).
            let result = usage.result.take();
            let mut conn = state
                .db
                .pool()
                .acquire()
                .await
                .map_err(ApiError::internal)?;
            let mut endpoints = crate::webhooks::Endpoints::default();
            finish_from_usage(&mut conn, &mut endpoints, &usage, result.as_ref())
                .await
                .map_err(ApiError::internal)?;
        }
    }
    Ok(())
}

/// Mark the run a usage record reports finished, with that usage (and the
/// outcome's name, unless a fuller outcome is stored), and queue its result
/// webhook in the same transaction: only the update that finishes the row
/// does, so a run finished twice (re-queued, delivered again) is one
/// event. `result` is the node's full outcome the record carried (taken
/// out of it on arrival: it goes to the webhook only, never stored). No
/// row yet, or already finished: nothing happens. Returns the rows
/// changed.
pub(crate) async fn finish_from_usage(
    conn: &mut sqlx::AnyConnection,
    endpoints: &mut crate::webhooks::Endpoints,
    usage: &RunUsage,
    result: Option<&Value>,
) -> Result<u64, sqlx::Error> {
    use sqlx::Connection as _;
    debug_assert!(
        usage.result.is_none(),
        "the result is passed beside the record"
    );
    let payload = serde_json::to_string(usage).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let outcome = json!({ "status": usage.outcome }).to_string();
    let mut tx = conn.begin().await?;
    let done = sqlx::query(
        "UPDATE runs SET status = 'finished', usage = $1, finished_at_ms = $2, \
             outcome = COALESCE(outcome, $3) \
         WHERE id = $4 AND tenant_id = $5 AND agent_id = $6 AND status <> 'finished'",
    )
    .bind(payload)
    .bind(usage.finished_at_ms)
    .bind(outcome)
    .bind(&usage.run_id)
    .bind(&usage.tenant_id)
    .bind(&usage.agent_id)
    .execute(&mut *tx)
    .await?;
    // The first finish wins: the queue stops delivering it (a re-queued
    // run's first delivery that ends, on whichever node, finishes it).
    crate::dispatch::sql::mark_finished(&mut tx, &usage.run_id, &usage.tenant_id).await?;
    if done.rows_affected() == 1 {
        let reported = result
            .filter(|r| r.get("status").and_then(Value::as_str) == Some(usage.outcome.as_str()));
        crate::run_end::ended(
            &mut tx,
            endpoints,
            &usage.tenant_id,
            &usage.run_id,
            crate::webhooks::RunEnd::Finished(reported),
            now_ms(),
        )
        .await?;
    }
    tx.commit().await?;
    if done.rows_affected() == 1 {
        crate::dispatch::wake();
    }
    Ok(done.rows_affected())
}

/// List this tenant's runs, oldest first.
#[utoipa::path(
    get,
    path = "/v1/runs",
    tag = "runs",
    params(PageQuery, RunFilter),
    responses((status = 200, description = "A page (no logs)", body = Page<Run>)),
    security(("bearer" = []))
)]
async fn list_runs(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
    Query(filter): Query<RunFilter>,
) -> Result<Json<Page<Run>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:read")?;
    // Both filters: the status (one of a fixed set, so spelt in the SQL)
    // narrows the table, the agent is the listing's bound filter.
    let table = match filter.status.as_deref() {
        None => RUNS_READ.to_owned(),
        Some(status) => {
            let status = STATUSES.iter().find(|s| **s == status).ok_or_else(|| {
                ApiError::invalid(format!("status must be one of {}", STATUSES.join(", ")))
            })?;
            format!("(SELECT * FROM {RUNS_READ} WHERE status = '{status}') runs_status")
        }
    };
    crate::pagination::tenant_page(
        &state.db,
        crate::pagination::Listing {
            columns: READ_COLUMNS,
            table: &table,
            filters: filter
                .agent_id
                .as_deref()
                .map(|a| ("agent_id", a))
                .as_slice(),
        },
        &principal.tenant_id,
        &page,
        run_from_row,
        |r: &Run| (r.created_at_ms, r.id.clone()),
    )
    .await
    .map(Json)
}

pub(crate) async fn load_run(state: &AppState, tenant: &str, id: &str) -> Result<Run, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {READ_COLUMNS} FROM {RUNS_READ} WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(state.db.pool())
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::not_found("run"))?;
    run_from_row(&row).map_err(ApiError::internal)
}

/// One run, from its node while the node has it (with the output and the
/// logs; the stored status is brought up to date), else as stored.
#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 404, description = "No such run in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:read")?;
    record_ids(None, None, Some(&id));
    let stored = load_run(&state, &principal.tenant_id, &id).await?;
    let node = match crate::nodes::up_node(&state, &stored.node_id).await {
        Ok(Some(node)) => node,
        Ok(None) => return Ok(Json(stored)),
        Err(e) => return Err(ApiError::internal(e)),
    };
    let record = match NodeClient::new(&state).get_run(&node, &id).await {
        Ok(record)
            if record.tenant_id == stored.tenant_id && record.agent_id == stored.agent_id =>
        {
            record
        }
        Ok(_) => {
            tracing::error!(node = %node.id, run = %id, "node answered another tenant's run");
            return Ok(Json(stored));
        }
        Err(e) => {
            if !e.is_not_found() {
                tracing::warn!(node = %node.id, error = %e, "fetching a run from its node");
            }
            return Ok(Json(stored));
        }
    };
    let mut run = run_from_record(record, &stored.node_id, stored.created_at_ms);
    run.trigger = stored.trigger.clone();
    run.deliveries = stored.deliveries;
    run.last_error = stored.last_error.clone();
    if run.status != stored.status {
        store_status(&state, &run).await?;
    }
    Ok(Json(run))
}

/// Put a dead run back in the queue: delivered again at once, with
/// `max_deliveries` deliveries ahead of it.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/retry",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 202, description = "Queued again (see `Location`)", body = RunAccepted),
        (status = 404, description = "No such run in this tenant"),
        (status = 409, description = "`not_dead`: only a dead run is retried"),
    ),
    security(("bearer" = []))
)]
async fn retry_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:write")?;
    record_ids(None, None, Some(&id));
    let stored = load_run(&state, &principal.tenant_id, &id).await?;
    let not_dead = || {
        ApiError::conflict(
            "not_dead",
            format!("run {id} is {}: only a dead run is retried", stored.status),
        )
    };
    if stored.status != "dead" {
        return Err(not_dead());
    }
    let now = now_ms();
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    // The queue row first (a write, as SQLite needs), conditional on its
    // state: two retries at once revive it once.
    let revived = sqlx::query(
        "UPDATE run_queue SET state = 'pending', deliveries = 0, not_before_ms = $1, \
         updated_at_ms = $1 WHERE run_id = $2 AND tenant_id = $3 AND state = 'dead'",
    )
    .bind(now)
    .bind(&id)
    .bind(&principal.tenant_id)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if revived.rows_affected() == 0 {
        return Err(not_dead());
    }
    sqlx::query(
        "UPDATE runs SET status = 'queued', finished_at_ms = NULL \
         WHERE id = $1 AND tenant_id = $2 AND status = 'dead'",
    )
    .bind(&id)
    .bind(&principal.tenant_id)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await.map_err(ApiError::internal)?;
    state.run_queue.announce(&[(id.clone(), now)]).await;
    Ok(Started::Accepted(RunAccepted {
        id,
        status: RunStatus::Queued.as_str().to_owned(),
    })
    .into_response())
}

/// One server-sent event of a run's log stream, as the node sends it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: the node writes the stream.
struct LogEvent {
    /// `log` for a line, `end` for the outcome (the last event).
    event: Option<String>,
    /// The event's JSON.
    data: String,
    /// The line's position in the run's log, to resume from.
    id: Option<String>,
}

/// A run's log as server-sent events, relayed from its node: `log` events
/// (one line each, JSON), live while it runs, then one `end` event.
#[utoipa::path(
    get,
    path = "/v1/runs/{id}/logs",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = LogEvent),
        (status = 404, description = "No such run in this tenant, or its node no longer has it"),
        (status = 503, description = "`node_unavailable`"),
    ),
    security(("bearer" = []))
)]
async fn run_logs(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:read")?;
    record_ids(None, None, Some(&id));
    let stored = load_run(&state, &principal.tenant_id, &id).await?;
    let node = crate::nodes::up_node(&state, &stored.node_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(node_unavailable)?;
    let upstream = NodeClient::new(&state)
        .run_logs(&node, &id)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                ApiError::not_found("the run's log")
            } else {
                e.to_api()
            }
        })?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(upstream.bytes_stream()))
        .map_err(ApiError::internal)
}
