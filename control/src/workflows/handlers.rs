//! The HTTP side of workflows (see the module doc in `mod.rs`).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use delta_http::{ApiError, JsonBody};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;
use utoipa::IntoParams;

use super::definition::Definition;
use super::engine;
use super::{CreateWorkflow, StartWorkflow, StepState, Workflow, WorkflowRun};
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

const WORKFLOW_COLUMNS: &str = "id, tenant_id, name, definition, created_at_ms, updated_at_ms";
const RUN_COLUMNS: &str = "id, tenant_id, workflow_id, status, input, output, error, \
                           tokens_used, created_at_ms, finished_at_ms";
/// How often an event stream looks for new events.
const POLL: Duration = Duration::from_millis(200);

fn json_column<T: serde::de::DeserializeOwned>(
    row: &sqlx::any::AnyRow,
    name: &str,
) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
        index: name.to_owned(),
        source: Box::new(e),
    })
}

fn workflow_from_row(row: &sqlx::any::AnyRow) -> Result<Workflow, sqlx::Error> {
    Ok(Workflow {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        definition: json_column(row, "definition")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn run_from_row(row: &sqlx::any::AnyRow) -> Result<WorkflowRun, sqlx::Error> {
    let output: Option<String> = row.try_get("output")?;
    Ok(WorkflowRun {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        workflow_id: row.try_get("workflow_id")?,
        status: row.try_get("status")?,
        input: json_column(row, "input")?,
        output: output.and_then(|o| serde_json::from_str(&o).ok()),
        error: row.try_get("error")?,
        tokens_used: row.try_get("tokens_used")?,
        created_at_ms: row.try_get("created_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        steps: None,
    })
}

fn invalid_name(name: &str) -> bool {
    name.is_empty()
        || name.chars().count() > 128
        || name.trim() != name
        || name.chars().any(char::is_control)
}

/// The definition with each step's agent resolved to an agent id of
/// `tenant` (422 `unknown_agent` naming the step otherwise).
async fn resolve_agents(
    state: &AppState,
    tenant: &str,
    mut definition: Definition,
) -> Result<Definition, ApiError> {
    definition
        .check()
        .map_err(|e| ApiError::invalid(format!("definition: {e}")))?;
    for step in &mut definition.steps {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM agents WHERE tenant_id = $1 AND (id = $2 OR name = $2) \
             ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(tenant)
        .bind(&step.agent)
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)?;
        step.agent = id.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_agent",
                format!(
                    "step {}: no agent of this tenant is named {:?}",
                    step.id, step.agent
                ),
            )
        })?;
    }
    Ok(definition)
}

/// Store a workflow.
#[utoipa::path(
    post,
    path = "/v1/workflows",
    tag = "workflows",
    request_body(
        content = CreateWorkflow,
        description = "JSON, or the same document as YAML with `Content-Type: \
                       application/yaml` (also `application/x-yaml`, `text/yaml`; \
                       400 `invalid_yaml` when it does not parse)"
    ),
    responses(
        (status = 201, description = "Stored", body = Workflow),
        (status = 409, description = "`name_taken`"),
        (status = 422, description = "`invalid` (the definition: steps, ids, cycles, templates), \
                                      `unknown_agent`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create_workflow(
    State(state): State<AppState>,
    principal: Principal,
    super::body::JsonOrYaml(body): super::body::JsonOrYaml<CreateWorkflow>,
) -> Result<(StatusCode, Json<Workflow>), ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    if invalid_name(&body.name) {
        return Err(ApiError::invalid(
            "name must be 1-128 characters without control characters or surrounding spaces",
        ));
    }
    let definition = resolve_agents(&state, &principal.tenant_id, body.definition).await?;
    let now = now_ms();
    let workflow = Workflow {
        id: format!("wfl_{}", uuid::Uuid::now_v7().simple()),
        tenant_id: principal.tenant_id.clone(),
        name: body.name,
        definition,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let inserted = sqlx::query(&format!(
        "INSERT INTO workflows ({WORKFLOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tenant_id, name) DO NOTHING"
    ))
    .bind(&workflow.id)
    .bind(&workflow.tenant_id)
    .bind(&workflow.name)
    .bind(serde_json::to_string(&workflow.definition).map_err(ApiError::internal)?)
    .bind(now)
    .bind(now)
    .execute(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(
            "name_taken",
            "a workflow of this tenant has that name",
        ));
    }
    Ok((StatusCode::CREATED, Json(workflow)))
}

/// List this tenant's workflows, oldest first.
#[utoipa::path(
    get,
    path = "/v1/workflows",
    tag = "workflows",
    params(PageQuery),
    responses((status = 200, description = "A page", body = Page<Workflow>)),
    security(("bearer" = []))
)]
pub(super) async fn list_workflows(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Workflow>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    crate::pagination::tenant_page(
        &state.db,
        crate::pagination::Listing {
            columns: WORKFLOW_COLUMNS,
            table: "workflows",
            filters: &[],
        },
        &principal.tenant_id,
        &page,
        workflow_from_row,
        |w: &Workflow| (w.created_at_ms, w.id.clone()),
    )
    .await
    .map(Json)
}

async fn load_workflow(state: &AppState, tenant: &str, id: &str) -> Result<Workflow, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(state.db.pool())
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::not_found("workflow"))?;
    workflow_from_row(&row).map_err(ApiError::internal)
}

/// One workflow.
#[utoipa::path(
    get,
    path = "/v1/workflows/{id}",
    tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    responses(
        (status = 200, description = "The workflow", body = Workflow),
        (status = 404, description = "No such workflow in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_workflow(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Workflow>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    load_workflow(&state, &principal.tenant_id, &id)
        .await
        .map(Json)
}

/// Delete a workflow (its runs in progress finish with the definition they
/// started with; its runs stay listed).
#[utoipa::path(
    delete,
    path = "/v1/workflows/{id}",
    tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such workflow in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn delete_workflow(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    let deleted = sqlx::query("DELETE FROM workflows WHERE id = $1 AND tenant_id = $2")
        .bind(&id)
        .bind(&principal.tenant_id)
        .execute(state.db.pool())
        .await
        .map_err(ApiError::internal)?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::not_found("workflow"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Start a run of a workflow.
#[utoipa::path(
    post,
    path = "/v1/workflows/{id}/runs",
    tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    request_body = StartWorkflow,
    responses(
        (status = 201, description = "Started: its first steps are queued", body = WorkflowRun),
        (status = 404, description = "No such workflow in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn start_workflow(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<StartWorkflow>,
) -> Result<(StatusCode, Json<WorkflowRun>), ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:write")?;
    let workflow = load_workflow(&state, &principal.tenant_id, &id).await?;
    let run_id = format!("wfr_{}", uuid::Uuid::now_v7().simple());
    let now = now_ms();
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO workflow_runs (id, tenant_id, workflow_id, definition, input, status, \
         created_at_ms) VALUES ($1, $2, $3, $4, $5, 'running', $6)",
    )
    .bind(&run_id)
    .bind(&workflow.tenant_id)
    .bind(&workflow.id)
    .bind(serde_json::to_string(&workflow.definition).map_err(ApiError::internal)?)
    .bind(body.input.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    for step in &workflow.definition.steps {
        sqlx::query(
            "INSERT INTO workflow_steps (workflow_run_id, step_id, tenant_id, status) \
             VALUES ($1, $2, $3, 'waiting')",
        )
        .bind(&run_id)
        .bind(&step.id)
        .bind(&workflow.tenant_id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    }
    let locked = engine::lock_running(&mut tx, &run_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("a workflow run vanished as it started"))?;
    engine::event(
        &mut tx,
        &run_id,
        "workflow.started",
        json!({ "workflow_id": workflow.id, "input": body.input }),
        now,
    )
    .await
    .map_err(ApiError::internal)?;
    engine::advance(&mut tx, &locked, now)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await.map_err(ApiError::internal)?;
    crate::dispatch::wake();
    let run = load_run(&state, &principal.tenant_id, &run_id).await?;
    Ok((StatusCode::CREATED, Json(run)))
}

/// `?workflow_id=` of `GET /v1/workflow-runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RunFilter {
    /// Only runs of this workflow.
    workflow_id: Option<String>,
}

/// List this tenant's workflow runs, oldest first (without their steps).
#[utoipa::path(
    get,
    path = "/v1/workflow-runs",
    tag = "workflows",
    params(PageQuery, RunFilter),
    responses((status = 200, description = "A page", body = Page<WorkflowRun>)),
    security(("bearer" = []))
)]
pub(super) async fn list_workflow_runs(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
    Query(filter): Query<RunFilter>,
) -> Result<Json<Page<WorkflowRun>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:read")?;
    crate::pagination::tenant_page(
        &state.db,
        crate::pagination::Listing {
            columns: RUN_COLUMNS,
            table: "workflow_runs",
            filters: filter
                .workflow_id
                .as_deref()
                .map(|w| ("workflow_id", w))
                .as_slice(),
        },
        &principal.tenant_id,
        &page,
        run_from_row,
        |r: &WorkflowRun| (r.created_at_ms, r.id.clone()),
    )
    .await
    .map(Json)
}

async fn load_run(state: &AppState, tenant: &str, id: &str) -> Result<WorkflowRun, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS}, definition FROM workflow_runs WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(state.db.pool())
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::not_found("workflow run"))?;
    let mut run = run_from_row(&row).map_err(ApiError::internal)?;
    let definition: Definition = json_column(&row, "definition").map_err(ApiError::internal)?;
    let rows = sqlx::query(
        "SELECT step_id, status, attempts, run_id, output, error, started_at_ms, \
         finished_at_ms FROM workflow_steps WHERE workflow_run_id = $1",
    )
    .bind(id)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let mut steps = Vec::with_capacity(rows.len());
    for r in &rows {
        let output: Option<String> = r.try_get("output").map_err(ApiError::internal)?;
        steps.push(StepState {
            id: r.try_get("step_id").map_err(ApiError::internal)?,
            status: r.try_get("status").map_err(ApiError::internal)?,
            attempts: r.try_get("attempts").map_err(ApiError::internal)?,
            run_id: r.try_get("run_id").map_err(ApiError::internal)?,
            output: output.and_then(|o| serde_json::from_str(&o).ok()),
            error: r.try_get("error").map_err(ApiError::internal)?,
            started_at_ms: r.try_get("started_at_ms").map_err(ApiError::internal)?,
            finished_at_ms: r.try_get("finished_at_ms").map_err(ApiError::internal)?,
        });
    }
    let position = |id: &str| definition.steps.iter().position(|s| s.id == id);
    steps.sort_by_key(|s| position(&s.id));
    run.steps = Some(steps);
    Ok(run)
}

/// One workflow run with its steps.
#[utoipa::path(
    get,
    path = "/v1/workflow-runs/{id}",
    tag = "workflows",
    params(("id" = String, Path, description = "Workflow run id")),
    responses(
        (status = 200, description = "The run and its steps", body = WorkflowRun),
        (status = 404, description = "No such workflow run in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_workflow_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<WorkflowRun>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:read")?;
    load_run(&state, &principal.tenant_id, &id).await.map(Json)
}

/// Cancel a workflow run: no further step starts, and the steps' runs
/// already on a node are stopped there.
#[utoipa::path(
    post,
    path = "/v1/workflow-runs/{id}/cancel",
    tag = "workflows",
    params(("id" = String, Path, description = "Workflow run id")),
    responses(
        (status = 200, description = "Cancelled", body = WorkflowRun),
        (status = 404, description = "No such workflow run in this tenant"),
        (status = 409, description = "`not_running`: it already ended"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn cancel_workflow_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<WorkflowRun>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:write")?;
    let current = load_run(&state, &principal.tenant_id, &id).await?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let locked = engine::lock_running(&mut tx, &id)
        .await
        .map_err(ApiError::internal)?
        .filter(|l| l.tenant_id == principal.tenant_id)
        .ok_or_else(|| {
            ApiError::conflict(
                "not_running",
                format!("workflow run {id} is {}", current.status),
            )
        })?;
    // The runs of the steps in progress: those already on a node are
    // stopped there once the cancel is committed (the others `end`
    // abandons in the queue).
    let running: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT run_id FROM workflow_steps WHERE workflow_run_id = $1 AND status = 'running'",
    )
    .bind(&id)
    .fetch_all(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    engine::end(&mut tx, &locked, "cancelled", "cancelled", now_ms())
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await.map_err(ApiError::internal)?;
    for run_id in running.into_iter().flatten() {
        // Once: the workflow run answers now, whether the node had it or not.
        let _ = super::stop_step_run(&state, &principal.tenant_id, &run_id).await;
    }
    load_run(&state, &principal.tenant_id, &id).await.map(Json)
}

/// `?after=` of the event stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// Only events after this `seq` (default: from the start; the
    /// `Last-Event-ID` header counts too).
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// Follow a workflow run's events (server-sent events, ending with the
/// run).
#[utoipa::path(
    get,
    path = "/v1/workflow-runs/{id}/events",
    tag = "workflows",
    params(("id" = String, Path, description = "Workflow run id"), EventsQuery),
    responses(
        (status = 200, description = "`text/event-stream`: `event: <type>`, `id: <seq>`, \
                                      `data: {seq, type, workflow_run_id, at_ms, data}`"),
        (status = 404, description = "No such workflow run in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn workflow_run_events(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:read")?;
    let exists: Option<String> =
        sqlx::query_scalar("SELECT id FROM workflow_runs WHERE id = $1 AND tenant_id = $2")
            .bind(&id)
            .bind(&principal.tenant_id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?;
    exists.ok_or_else(|| ApiError::not_found("workflow run"))?;
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let after = query.after.or(resumed).unwrap_or(0).max(0);
    let db = state.db.clone();
    let what = format!("workflow run {id}");
    crate::sse::follow(what, after, POLL, move |last| {
        let (db, id) = (db.clone(), id.clone());
        async move { next_events(&db, &id, last).await }
    })
}

/// Events of workflow run `id` after `after`; closed once it ended and
/// every event was read.
async fn next_events(
    db: &crate::db::Db,
    id: &str,
    after: i64,
) -> Result<crate::sse::Batch, sqlx::Error> {
    const BATCH: i64 = 200;
    let status: String = sqlx::query_scalar("SELECT status FROM workflow_runs WHERE id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await?;
    let rows = sqlx::query(
        "SELECT seq, event_type, data, created_at_ms FROM workflow_events \
         WHERE workflow_run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(id)
    .bind(after)
    .bind(BATCH)
    .fetch_all(db.pool())
    .await?;
    let mut last = after;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        let kind: String = row.try_get("event_type")?;
        let data: String = row.try_get("data")?;
        let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
        let body = json!({ "seq": seq, "type": kind, "workflow_run_id": id,
                           "at_ms": row.try_get::<i64, _>("created_at_ms")?, "data": data });
        events.push(crate::sse::event_block(&kind, seq, &body));
        last = seq;
    }
    Ok(crate::sse::Batch {
        events,
        last,
        // The status was read first: a run that ended after it is seen at
        // the next poll with all its events.
        closed: status != "running" && rows.len() < BATCH as usize,
    })
}
