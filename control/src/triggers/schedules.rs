//! The schedule routes: `POST/GET /v1/agents/{id}/schedules`,
//! `GET/PATCH/DELETE /v1/schedules/{id}`, `GET /v1/schedules/{id}/fires`.
//!
//! Roles as for the agent itself: reading needs `member` and `agents:read`;
//! creating, changing and deleting need `admin` and `agents:write` (a
//! schedule starts runs on the tenant's budget with nobody asking).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use delta_http::{ApiError, JsonBody, record_ids};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cron::{Timing, jitter_ms};
use super::model::{self, CreateSchedule, Fire, PatchSchedule, Schedule};
use super::store::{self, FIRE_COLUMNS, SCHEDULE_COLUMNS, StoredSchedule};
use crate::agents::load_agent;
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::pagination::{Listing, Page, PageQuery, tenant_page};

/// Routes of schedules.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_schedule, list_schedules))
        .routes(routes!(get_schedule, patch_schedule, delete_schedule))
        .routes(routes!(list_fires))
}

/// Set the next tick and fire from `now_ms` (none when disabled).
fn schedule_next(s: &mut StoredSchedule, timing: &Timing, now_ms: i64) {
    let tick = if s.schedule.enabled {
        timing.next_after(now_ms)
    } else {
        None
    };
    s.next_tick_ms = tick;
    s.schedule.next_fire_at_ms = tick.map(|t| {
        t.saturating_add(jitter_ms(
            &s.schedule.id,
            t,
            i64::from(s.schedule.jitter_secs),
        ))
    });
}

/// Create a schedule of an agent.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/schedules",
    operation_id = "create_schedule",
    tag = "triggers",
    params(("id" = String, Path, description = "Agent id")),
    request_body = CreateSchedule,
    responses(
        (status = 201, description = "Created", body = Schedule),
        (status = 403, description = "`quota_exceeded`: the agent has `[quotas] schedules_per_agent` already"),
        (status = 404, description = "No such agent in this tenant"),
        (status = 422, description = "`invalid_cron`, `invalid_time_zone` or `invalid`"),
    ),
    security(("bearer" = []))
)]
async fn create_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody<CreateSchedule>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&agent_id), None);
    let agent = load_agent(&state, &principal.tenant_id, &agent_id).await?;
    let timing = model::timing(&body.cron, &body.time_zone, body.jitter_secs)?;
    let now = now_ms();
    let mut stored = StoredSchedule {
        schedule: Schedule {
            id: format!("sch_{}", uuid::Uuid::now_v7().simple()),
            agent_id: agent.id,
            cron: body.cron,
            time_zone: body.time_zone,
            input: body.input,
            catch_up: body.catch_up,
            jitter_secs: body.jitter_secs,
            enabled: body.enabled,
            next_fire_at_ms: None,
            last_fire_at_ms: None,
            created_at_ms: now,
            updated_at_ms: now,
        },
        tenant_id: principal.tenant_id.clone(),
        next_tick_ms: None,
    };
    schedule_next(&mut stored, &timing, now);
    store::insert_schedule(&state.db, &stored, state.config.quotas.schedules_per_agent).await?;
    Ok((StatusCode::CREATED, Json(stored.schedule)))
}

/// List an agent's schedules, oldest first.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/schedules",
    operation_id = "list_schedules",
    tag = "triggers",
    params(("id" = String, Path, description = "Agent id"), PageQuery),
    responses(
        (status = 200, description = "A page", body = Page<Schedule>),
        (status = 404, description = "No such agent in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn list_schedules(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Schedule>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    let agent = load_agent(&state, &principal.tenant_id, &agent_id).await?;
    tenant_page(
        &state.db,
        Listing {
            columns: SCHEDULE_COLUMNS,
            table: "schedules",
            filters: &[("agent_id", &agent.id)],
        },
        &principal.tenant_id,
        &page,
        |row| store::schedule_from_row(row).map(|s| s.schedule),
        |s: &Schedule| (s.created_at_ms, s.id.clone()),
    )
    .await
    .map(Json)
}

/// A schedule.
#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    operation_id = "get_schedule",
    tag = "triggers",
    params(("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        (status = 404, description = "No such schedule in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    let stored = store::load_schedule(&state.db, &principal.tenant_id, &id).await?;
    Ok(Json(stored.schedule))
}

/// Change a schedule; its next fire is computed again from now.
#[utoipa::path(
    patch,
    path = "/v1/schedules/{id}",
    operation_id = "patch_schedule",
    tag = "triggers",
    params(("id" = String, Path, description = "Schedule id")),
    request_body = PatchSchedule,
    responses(
        (status = 200, description = "The changed schedule", body = Schedule),
        (status = 404, description = "No such schedule in this tenant"),
        (status = 422, description = "`invalid_cron`, `invalid_time_zone` or `invalid`"),
    ),
    security(("bearer" = []))
)]
async fn patch_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PatchSchedule>,
) -> Result<Json<Schedule>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    let mut stored = store::load_schedule(&state.db, &principal.tenant_id, &id).await?;
    let s = &mut stored.schedule;
    if let Some(cron) = body.cron {
        s.cron = cron;
    }
    if let Some(tz) = body.time_zone {
        s.time_zone = tz;
    }
    if let Some(input) = body.input {
        s.input = input;
    }
    if let Some(catch_up) = body.catch_up {
        s.catch_up = catch_up;
    }
    if let Some(jitter) = body.jitter_secs {
        s.jitter_secs = jitter;
    }
    if let Some(enabled) = body.enabled {
        s.enabled = enabled;
    }
    let timing = model::timing(&s.cron, &s.time_zone, s.jitter_secs)?;
    let now = now_ms();
    s.updated_at_ms = now;
    schedule_next(&mut stored, &timing, now);
    if !store::update_schedule(&state.db, &stored).await? {
        return Err(ApiError::not_found("schedule"));
    }
    Ok(Json(stored.schedule))
}

/// Delete a schedule (its fire records go with it).
#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    operation_id = "delete_schedule",
    tag = "triggers",
    params(("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such schedule in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn delete_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    if store::delete_schedule(&state.db, &principal.tenant_id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("schedule"))
    }
}

/// A schedule's fires, oldest first: the run each started, or why none
/// did. Kept for `record_retention_secs`.
#[utoipa::path(
    get,
    path = "/v1/schedules/{id}/fires",
    operation_id = "list_schedule_fires",
    tag = "triggers",
    params(("id" = String, Path, description = "Schedule id"), PageQuery),
    responses(
        (status = 200, description = "A page", body = Page<Fire>),
        (status = 404, description = "No such schedule in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn list_fires(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Fire>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    let schedule = store::load_schedule(&state.db, &principal.tenant_id, &id).await?;
    tenant_page(
        &state.db,
        Listing {
            columns: FIRE_COLUMNS,
            table: "schedule_fires",
            filters: &[("schedule_id", &schedule.schedule.id)],
        },
        &principal.tenant_id,
        &page,
        store::fire_from_row,
        |f: &Fire| (f.fired_at_ms, f.id.clone()),
    )
    .await
    .map(Json)
}
