//! Workflows (issue 14): a stored definition (a DAG of steps, each a run of
//! one of the tenant's agents, see [`definition`]) and its runs.
//!
//! - `POST /v1/workflows` (`{name, definition}`; admins, `agents:write`)
//!   checks the DAG and resolves each step's agent in the tenant (422
//!   `invalid` or `unknown_agent`); `GET`, `GET /{id}`, `DELETE /{id}`
//!   (runs in progress keep the definition they started with).
//! - `POST /v1/workflows/{id}/runs` (`{input}`; `runs:write`) starts a run:
//!   the steps with nothing before them are queued at once. `GET
//!   /v1/workflow-runs[?workflow_id=]`, `GET /v1/workflow-runs/{id}` (with
//!   each step's status, attempts, run, output or error), `POST
//!   /v1/workflow-runs/{id}/cancel` (no further step starts; attempts not
//!   yet on a node are dropped, those running finish and are ignored), and
//!   `GET /v1/workflow-runs/{id}/events`: server-sent events
//!   (`step.started`, `step.completed`, `step.retrying`, `step.failed`,
//!   `workflow.completed`, `workflow.failed`, `workflow.cancelled`), from
//!   the start or after `?after=<seq>` / `Last-Event-ID`, ending with the
//!   run.
//!
//! How a run moves is in [`engine`]: every change is one transaction with
//! its event, and a step's end is recorded by the transaction that ends its
//! run, so a crash resumes the workflow without running a finished step
//! again. Another tenant's workflow or run is a 404 like an unknown one.

mod body;
pub mod definition;
pub mod engine;
mod handlers;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use definition::Definition;

use crate::state::AppState;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::create_workflow, handlers::list_workflows))
        .routes(routes!(handlers::get_workflow, handlers::delete_workflow))
        .routes(routes!(handlers::start_workflow))
        .routes(routes!(handlers::list_workflow_runs))
        .routes(routes!(handlers::get_workflow_run))
        .routes(routes!(handlers::cancel_workflow_run))
        .routes(routes!(handlers::workflow_run_events))
}

/// A stored workflow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Workflow {
    /// `wfl_...`.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Unique in the tenant.
    pub name: String,
    /// The steps; each step's `agent` is the agent's id.
    pub definition: Definition,
    /// Created at.
    pub created_at_ms: i64,
    /// Last changed.
    pub updated_at_ms: i64,
}

/// Body of `POST /v1/workflows`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    /// 1-128 characters, no control characters, unique in the tenant (409
    /// `name_taken`).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub name: String,
    /// The steps.
    pub definition: Definition,
}

/// Body of `POST /v1/workflows/{id}/runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartWorkflow {
    /// The workflow run's input (any JSON; default `{}`), `/input` in the
    /// steps' templates.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub input: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A run of a workflow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowRun {
    /// `wfr_...` (the `trigger.id` of its steps' runs).
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The workflow.
    pub workflow_id: String,
    /// `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Its input.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Its output, once `completed`.
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Why it failed (`step <id> failed: ...`, `token_budget_exceeded`) or
    /// was cancelled.
    pub error: Option<String>,
    /// Tokens its finished steps' runs used.
    pub tokens_used: i64,
    /// Started at.
    pub created_at_ms: i64,
    /// Ended at.
    pub finished_at_ms: Option<i64>,
    /// Each step's state, in the definition's order (in answers about one
    /// run; absent in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepState>>,
}

/// Where one step of a workflow run is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepState {
    /// The step's id.
    pub id: String,
    /// `waiting`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The current (or last) attempt's run (`GET /v1/runs/{id}`).
    pub run_id: Option<String>,
    /// Its output, once `completed`.
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// When the current attempt was queued.
    pub started_at_ms: Option<i64>,
    /// When it ended.
    pub finished_at_ms: Option<i64>,
}

/// Stop a step's run on its node, if a node has it: the workflow run was
/// cancelled, or the attempt timed out. Best effort: the step has moved on
/// either way (the run's end is recorded and ignored), so a failure is only
/// logged. False when no node has the run yet: it is being handed to one
/// this moment (see [`stop_step_run_patiently`]).
pub(crate) async fn stop_step_run(state: &AppState, tenant: &str, run_id: &str) -> bool {
    let run = match crate::runs::load_run(state, tenant, run_id).await {
        Ok(run) => run,
        Err(e) => {
            tracing::warn!(run = run_id, error = %e.message, "reading a stopped step's run");
            return true;
        }
    };
    if crate::run_cancel::has_ended(&run) {
        return true;
    }
    // Back in the run queue (a delivery failed): it ends there.
    match crate::run_cancel::cancel_queued(state, tenant, run_id).await {
        Ok(true) => return true,
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(run = run_id, error = %e.message, "ending a stopped step's queued run");
            return true;
        }
    }
    match crate::run_cancel::stop_on_node(state, &run).await {
        Ok(crate::run_cancel::Stop::Stopping) => true,
        Ok(crate::run_cancel::Stop::NotThere) => false,
        Err(e) => {
            tracing::warn!(run = run_id, error = %e.message, "stopping a step's run");
            true
        }
    }
}

/// [`stop_step_run`], asked again while the run is on its way to a node
/// (a delivery takes at most the node call's timeout): for a timed-out
/// attempt, which the dispatcher stops in a task of its own.
pub(crate) async fn stop_step_run_patiently(state: &AppState, tenant: &str, run_id: &str) {
    const TRIES: u32 = 30;
    for _ in 0..TRIES {
        if stop_step_run(state, tenant, run_id).await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    tracing::warn!(
        run = run_id,
        "a timed-out step's run never reached a node to be stopped"
    );
}
