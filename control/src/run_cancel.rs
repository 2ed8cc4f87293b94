//! `POST /v1/runs/{id}/cancel`: stop one run wherever it is.
//!
//! - Still in the run queue (no node has taken it): the queue row and the
//!   run end at once, `finished` with the outcome `cancelled`, in one
//!   transaction that also queues its result webhook and tells its
//!   workflow ([`crate::run_end::ended`]), as a node's cancelled run would.
//! - On a node: the node is asked to stop it (a queued run leaves the
//!   node's queue, a running one is interrupted); the node records the end
//!   as `cancelled` with the usage so far and reports it like any end, so
//!   the usage is charged and the run turns `finished` when the report
//!   arrives (202 until then).
//! - Ended already: 409 `not_running`.
//!
//! Cancelling a workflow run uses [`stop_on_node`] for its steps' runs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use delta_http::{ApiError, record_ids};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::nodeclient::NodeClient;
use crate::runs::{Run, load_run};

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cancel_run))
}

/// Cancel a run: before a node takes it, or on its node.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/cancel",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "Cancelled before any node took it: `finished` with \
                                      the outcome `cancelled`", body = Run),
        (status = 202, description = "Its node is stopping it: it turns `finished` with the \
                                      outcome `cancelled` (and its usage so far) when the \
                                      node reports", body = Run),
        (status = 404, description = "No such run in this tenant"),
        (status = 409, description = "`not_running`: it already ended; `being_delivered`: \
                                      it is being handed to a node this moment (try again)"),
        (status = 503, description = "`node_unavailable`: its node does not answer"),
    ),
    security(("bearer" = []))
)]
async fn cancel_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:write")?;
    record_ids(None, None, Some(&id));
    let stored = load_run(&state, &principal.tenant_id, &id).await?;
    refuse_ended(&stored)?;
    if cancel_queued(&state, &principal.tenant_id, &id).await? {
        let run = load_run(&state, &principal.tenant_id, &id).await?;
        return Ok(Json(run).into_response());
    }
    match stop_on_node(&state, &stored).await? {
        Stop::Stopping => {}
        Stop::NotThere => {
            // Claimed by a dispatcher (not `pending`) but not yet on its
            // node, or ended in between: which, the next read tells.
            refuse_ended(&load_run(&state, &principal.tenant_id, &id).await?)?;
            return Err(ApiError::conflict(
                "being_delivered",
                format!("run {id} is being handed to a node; try again in a moment"),
            ));
        }
    }
    let run = load_run(&state, &principal.tenant_id, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

/// Whether `run` has ended (nothing left to stop).
pub(crate) fn has_ended(run: &Run) -> bool {
    matches!(run.status.as_str(), "finished" | "dead")
}

/// 409 `not_running` for a run that has ended.
fn refuse_ended(run: &Run) -> Result<(), ApiError> {
    if has_ended(run) {
        return Err(ApiError::conflict(
            "not_running",
            format!("run {} is {}", run.id, run.status),
        ));
    }
    Ok(())
}

/// End run `run_id` of `tenant` as cancelled if it is still waiting in the
/// run queue (no node has it); false if it is not (delivered, or ended).
pub(crate) async fn cancel_queued(
    state: &AppState,
    tenant: &str,
    run_id: &str,
) -> Result<bool, ApiError> {
    let now = now_ms();
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    // The queue row first, conditional on `pending`: a dispatcher that
    // claims it at the same moment makes it `dispatched`, and this does
    // nothing.
    let taken = sqlx::query(
        "UPDATE run_queue SET state = 'finished', last_error = 'cancelled', updated_at_ms = $1 \
         WHERE run_id = $2 AND tenant_id = $3 AND state = 'pending'",
    )
    .bind(now)
    .bind(run_id)
    .bind(tenant)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if taken.rows_affected() == 0 {
        return Ok(false);
    }
    let outcome = json!({ "status": "cancelled" });
    let ended = sqlx::query(
        "UPDATE runs SET status = 'finished', outcome = $1, finished_at_ms = $2 \
         WHERE id = $3 AND tenant_id = $4 AND status NOT IN ('finished', 'dead')",
    )
    .bind(outcome.to_string())
    .bind(now)
    .bind(run_id)
    .bind(tenant)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if ended.rows_affected() == 1 {
        crate::run_end::ended(
            &mut tx,
            &mut crate::webhooks::Endpoints::default(),
            tenant,
            run_id,
            crate::webhooks::RunEnd::Finished(Some(&outcome)),
            now,
        )
        .await
        .map_err(ApiError::internal)?;
    }
    tx.commit().await.map_err(ApiError::internal)?;
    // A workflow whose step this was may have moved on.
    crate::dispatch::wake();
    tracing::info!(run = run_id, "queued run cancelled");
    Ok(true)
}

/// What asking a run's node to stop it found.
pub(crate) enum Stop {
    /// The node has it and is stopping it (or it had already ended there;
    /// its report brings the end).
    Stopping,
    /// The node does not have it.
    NotThere,
}

/// Ask the node that run `run` was given to to stop it. 503
/// `node_unavailable` when that node is down or does not answer.
pub(crate) async fn stop_on_node(state: &AppState, run: &Run) -> Result<Stop, ApiError> {
    let node = crate::nodes::up_node(state, &run.node_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(crate::nodeclient::node_unavailable)?;
    match NodeClient::new(state).cancel_run(&node, &run.id).await {
        Ok(record) if record.tenant_id == run.tenant_id => Ok(Stop::Stopping),
        Ok(_) => {
            tracing::error!(node = %node.id, run = %run.id, "node answered another tenant's run");
            Err(ApiError::internal("the node answered another tenant's run"))
        }
        Err(e) if e.is_not_found() => Ok(Stop::NotThere),
        Err(e) if e.is_unreachable() => Err(crate::nodeclient::node_unavailable()),
        Err(e) => Err(e.to_api()),
    }
}
