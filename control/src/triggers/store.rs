//! The triggers' SQL: schedules, their fires, webhooks and the signatures
//! seen. Every statement that a caller reaches is scoped by tenant; the fire
//! loop's reads span tenants (it serves them all) and carry each row's
//! tenant onward.

use delta_http::ApiError;
use serde_json::Value;
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::cron::CatchUp;
use super::model::{Fire, Schedule, Webhook};
use crate::db::{Backend, Db};

/// Columns of `schedules` as [`schedule_from_row`] reads them.
pub const SCHEDULE_COLUMNS: &str = "id, tenant_id, agent_id, cron, time_zone, input, catch_up, \
     jitter_secs, enabled, next_tick_ms, next_fire_at_ms, last_fire_at_ms, created_at_ms, \
     updated_at_ms";

/// A stored schedule with what the API does not show.
#[derive(Debug, Clone)]
pub struct StoredSchedule {
    /// As answered.
    pub schedule: Schedule,
    /// Its tenant.
    pub tenant_id: String,
    /// The cron tick `next_fire_at_ms` belongs to.
    pub next_tick_ms: Option<i64>,
}

fn decode(name: &str, e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: name.to_owned(),
        source: Box::new(e),
    }
}

/// Read a `schedules` row.
pub fn schedule_from_row(row: &AnyRow) -> Result<StoredSchedule, sqlx::Error> {
    let input: String = row.try_get("input")?;
    let catch_up: String = row.try_get("catch_up")?;
    let jitter: i64 = row.try_get("jitter_secs")?;
    Ok(StoredSchedule {
        schedule: Schedule {
            id: row.try_get("id")?,
            agent_id: row.try_get("agent_id")?,
            cron: row.try_get("cron")?,
            time_zone: row.try_get("time_zone")?,
            input: serde_json::from_str::<Value>(&input).map_err(|e| decode("input", e))?,
            catch_up: CatchUp::parse(&catch_up).into(),
            jitter_secs: u32::try_from(jitter).map_err(|e| decode("jitter_secs", e))?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            next_fire_at_ms: row.try_get("next_fire_at_ms")?,
            last_fire_at_ms: row.try_get("last_fire_at_ms")?,
            created_at_ms: row.try_get("created_at_ms")?,
            updated_at_ms: row.try_get("updated_at_ms")?,
        },
        tenant_id: row.try_get("tenant_id")?,
        next_tick_ms: row.try_get("next_tick_ms")?,
    })
}

/// Insert a new schedule (its next fire already computed), unless its
/// agent has `limit` schedules already (403 `quota_exceeded`).
pub async fn insert_schedule(db: &Db, s: &StoredSchedule, limit: u64) -> Result<(), ApiError> {
    let c = &s.schedule;
    let mut tx = db.begin().await.map_err(ApiError::internal)?;
    within_limit(&mut tx, "schedules", &s.tenant_id, &c.agent_id, limit).await?;
    sqlx::query(&format!(
        "INSERT INTO schedules ({SCHEDULE_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&c.id)
    .bind(&s.tenant_id)
    .bind(&c.agent_id)
    .bind(&c.cron)
    .bind(&c.time_zone)
    .bind(c.input.to_string())
    .bind(CatchUp::from(c.catch_up).as_str())
    .bind(i64::from(c.jitter_secs))
    .bind(i64::from(c.enabled))
    .bind(s.next_tick_ms)
    .bind(c.next_fire_at_ms)
    .bind(c.last_fire_at_ms)
    .bind(c.created_at_ms)
    .bind(c.updated_at_ms)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(())
}

/// 403 `quota_exceeded` when `agent` has `limit` rows in `table`
/// (`schedules` or `webhooks`) already. Called in the inserting
/// transaction: it writes the agent's row first, so that concurrent
/// creations for one agent take turns and cannot both pass the count.
async fn within_limit(
    tx: &mut AnyConnection,
    table: &'static str,
    tenant: &str,
    agent: &str,
    limit: u64,
) -> Result<(), ApiError> {
    let locked = sqlx::query("UPDATE agents SET name = name WHERE id = $1 AND tenant_id = $2")
        .bind(agent)
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    if locked.rows_affected() == 0 {
        // Deleted since the handler loaded it.
        return Err(ApiError::not_found("agent"));
    }
    let used: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE agent_id = $1 AND tenant_id = $2"
    ))
    .bind(agent)
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    let used = u64::try_from(used).unwrap_or(0);
    if used >= limit {
        let quota = if table == "schedules" {
            "schedules_per_agent"
        } else {
            "webhooks_per_agent"
        };
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "quota_exceeded",
            format!(
                "an agent may have {limit} {table} and this one has {used}; \
                 delete one first (the limit is `[quotas] {quota}` of the control plane)"
            ),
        )
        .details(serde_json::json!({ "quota": quota, "limit": limit, "used": used })));
    }
    Ok(())
}

/// The tenant's schedule `id`, or 404.
pub async fn load_schedule(db: &Db, tenant: &str, id: &str) -> Result<StoredSchedule, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(db.pool())
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::not_found("schedule"))?;
    schedule_from_row(&row).map_err(ApiError::internal)
}

/// Write back every field a PATCH may change (and the next fire it
/// implies); false when the row is gone.
pub async fn update_schedule(db: &Db, s: &StoredSchedule) -> Result<bool, ApiError> {
    let c = &s.schedule;
    let done = sqlx::query(
        "UPDATE schedules SET cron = $1, time_zone = $2, input = $3, catch_up = $4, \
         jitter_secs = $5, enabled = $6, next_tick_ms = $7, next_fire_at_ms = $8, \
         updated_at_ms = $9 WHERE id = $10 AND tenant_id = $11",
    )
    .bind(&c.cron)
    .bind(&c.time_zone)
    .bind(c.input.to_string())
    .bind(CatchUp::from(c.catch_up).as_str())
    .bind(i64::from(c.jitter_secs))
    .bind(i64::from(c.enabled))
    .bind(s.next_tick_ms)
    .bind(c.next_fire_at_ms)
    .bind(c.updated_at_ms)
    .bind(&c.id)
    .bind(&s.tenant_id)
    .execute(db.pool())
    .await
    .map_err(ApiError::internal)?;
    Ok(done.rows_affected() == 1)
}

/// Delete the tenant's schedule `id`; false if there was none.
pub async fn delete_schedule(db: &Db, tenant: &str, id: &str) -> Result<bool, ApiError> {
    let done = sqlx::query("DELETE FROM schedules WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .execute(db.pool())
        .await
        .map_err(ApiError::internal)?;
    Ok(done.rows_affected() == 1)
}

/// The `WHERE` and `ORDER BY` of the due schedules at `$1`: most overdue
/// first, then by id (the fire loop claims in this order in one
/// transaction, so that two PostgreSQL replicas waiting on each other's row
/// locks wait in one order and never deadlock).
const DUE: &str = "WHERE enabled = 1 AND next_fire_at_ms IS NOT NULL AND next_fire_at_ms <= $1 \
     ORDER BY next_fire_at_ms, id LIMIT $2";

/// Enabled schedules due at `now_ms`, at most `limit`.
pub async fn due_schedules(
    db: &Db,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<StoredSchedule>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules {DUE}"))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(schedule_from_row).collect()
}

/// [`due_schedules`] in the fire loop's transaction: on PostgreSQL the rows
/// are locked and rows another transaction holds are skipped (`FOR UPDATE
/// SKIP LOCKED`), so concurrent passes take disjoint batches; SQLite's
/// transaction already excludes every other writer.
pub async fn due_schedules_locked(
    conn: &mut AnyConnection,
    backend: Backend,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<StoredSchedule>, sqlx::Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let rows = sqlx::query(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules {DUE}{lock}"
    ))
    .bind(now_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(schedule_from_row).collect()
}

/// The claim: move schedule `id` from the fire this replica saw
/// (`seen_fire_ms`) to the next one. Exactly one replica's UPDATE matches
/// the row (the others see `next_fire_at_ms` changed); true for it.
/// `fired_at_ms` is set when the tick is fired, not when it is skipped.
pub async fn claim(
    db: &Db,
    id: &str,
    seen_fire_ms: i64,
    next_tick_ms: Option<i64>,
    next_fire_ms: Option<i64>,
    fired_at_ms: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let mut conn = db.pool().acquire().await?;
    claim_in(
        &mut conn,
        id,
        seen_fire_ms,
        next_tick_ms,
        next_fire_ms,
        fired_at_ms,
    )
    .await
}

/// [`claim`] on `conn` (the fire loop's transaction).
pub async fn claim_in(
    conn: &mut AnyConnection,
    id: &str,
    seen_fire_ms: i64,
    next_tick_ms: Option<i64>,
    next_fire_ms: Option<i64>,
    fired_at_ms: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE schedules SET next_tick_ms = $1, next_fire_at_ms = $2, \
         last_fire_at_ms = COALESCE($3, last_fire_at_ms) \
         WHERE id = $4 AND next_fire_at_ms = $5 AND enabled = 1",
    )
    .bind(next_tick_ms)
    .bind(next_fire_ms)
    .bind(fired_at_ms)
    .bind(id)
    .bind(seen_fire_ms)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Record one fire: the run it queued or why none. A second record of
/// the same tick is ignored (the claim already made it impossible).
pub async fn record_fire(
    conn: &mut AnyConnection,
    schedule: &StoredSchedule,
    tick_ms: i64,
    fired_at_ms: i64,
    run_id: Option<&str>,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO schedule_fires (id, schedule_id, tenant_id, tick_ms, created_at_ms, run_id, \
         error) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (schedule_id, tick_ms) DO NOTHING",
    )
    .bind(format!("fire_{}", uuid::Uuid::now_v7().simple()))
    .bind(&schedule.schedule.id)
    .bind(&schedule.tenant_id)
    .bind(tick_ms)
    .bind(fired_at_ms)
    .bind(run_id)
    .bind(error)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Columns of `schedule_fires` as [`fire_from_row`] reads them.
pub const FIRE_COLUMNS: &str = "id, tick_ms, created_at_ms, run_id, error";

/// Read a `schedule_fires` row.
pub fn fire_from_row(row: &AnyRow) -> Result<Fire, sqlx::Error> {
    Ok(Fire {
        id: row.try_get("id")?,
        tick_ms: row.try_get("tick_ms")?,
        fired_at_ms: row.try_get("created_at_ms")?,
        run_id: row.try_get("run_id")?,
        error: row.try_get("error")?,
    })
}

/// Columns of `webhooks` as [`webhook_from_row`] reads them.
pub const WEBHOOK_COLUMNS: &str = "id, tenant_id, agent_id, secret_sealed, created_at_ms, \
     rotated_at_ms";

/// A stored webhook with its sealed secret and tenant.
#[derive(Debug, Clone)]
pub struct StoredWebhook {
    /// As answered.
    pub webhook: Webhook,
    /// Its tenant.
    pub tenant_id: String,
    /// The secret, sealed.
    pub secret_sealed: String,
}

/// Read a `webhooks` row.
pub fn webhook_from_row(row: &AnyRow) -> Result<StoredWebhook, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(StoredWebhook {
        webhook: Webhook {
            url: format!("/v1/hooks/{id}"),
            id,
            agent_id: row.try_get("agent_id")?,
            created_at_ms: row.try_get("created_at_ms")?,
            rotated_at_ms: row.try_get("rotated_at_ms")?,
        },
        tenant_id: row.try_get("tenant_id")?,
        secret_sealed: row.try_get("secret_sealed")?,
    })
}

/// Insert a new webhook, unless its agent has `limit` webhooks already
/// (403 `quota_exceeded`).
pub async fn insert_webhook(db: &Db, w: &StoredWebhook, limit: u64) -> Result<(), ApiError> {
    let mut tx = db.begin().await.map_err(ApiError::internal)?;
    within_limit(
        &mut tx,
        "webhooks",
        &w.tenant_id,
        &w.webhook.agent_id,
        limit,
    )
    .await?;
    sqlx::query(&format!(
        "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(&w.webhook.id)
    .bind(&w.tenant_id)
    .bind(&w.webhook.agent_id)
    .bind(&w.secret_sealed)
    .bind(w.webhook.created_at_ms)
    .bind(w.webhook.rotated_at_ms)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(())
}

/// Webhook `id` of `tenant` (none: any tenant, for the public delivery
/// route, which learns the tenant from the row), or 404.
pub async fn load_webhook(
    db: &Db,
    tenant: Option<&str>,
    id: &str,
) -> Result<StoredWebhook, ApiError> {
    let sql = match tenant {
        Some(_) => {
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND tenant_id = $2")
        }
        None => format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1"),
    };
    let mut query = sqlx::query(&sql).bind(id);
    if let Some(tenant) = tenant {
        query = query.bind(tenant);
    }
    let row = query
        .fetch_optional(db.pool())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    webhook_from_row(&row).map_err(ApiError::internal)
}

/// Replace the tenant's webhook's sealed secret; false if there is none.
pub async fn rotate_webhook(
    db: &Db,
    tenant: &str,
    id: &str,
    sealed: &str,
    now_ms: i64,
) -> Result<bool, ApiError> {
    let done = sqlx::query(
        "UPDATE webhooks SET secret_sealed = $1, rotated_at_ms = $2 \
         WHERE id = $3 AND tenant_id = $4",
    )
    .bind(sealed)
    .bind(now_ms)
    .bind(id)
    .bind(tenant)
    .execute(db.pool())
    .await
    .map_err(ApiError::internal)?;
    Ok(done.rows_affected() == 1)
}

/// Delete the tenant's webhook `id`; false if there was none.
pub async fn delete_webhook(db: &Db, tenant: &str, id: &str) -> Result<bool, ApiError> {
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .execute(db.pool())
        .await
        .map_err(ApiError::internal)?;
    Ok(done.rows_affected() == 1)
}

/// Remember signature `sig` of webhook `id` until `expires_at_ms`; false
/// if it was already seen (a replay). The primary key decides, so two
/// replicas receiving the same delivery cannot both accept it.
pub async fn first_sight(
    db: &Db,
    id: &str,
    sig: &str,
    expires_at_ms: i64,
) -> Result<bool, ApiError> {
    let done = sqlx::query(
        "INSERT INTO webhook_signatures (webhook_id, signature, expires_at_ms) \
         VALUES ($1, $2, $3) ON CONFLICT (webhook_id, signature) DO NOTHING",
    )
    .bind(id)
    .bind(sig)
    .bind(expires_at_ms)
    .execute(db.pool())
    .await
    .map_err(ApiError::internal)?;
    Ok(done.rows_affected() == 1)
}

/// Forget one seen signature: its delivery started nothing, so the sender
/// may send it again.
pub async fn forget_signature(db: &Db, id: &str, sig: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM webhook_signatures WHERE webhook_id = $1 AND signature = $2")
        .bind(id)
        .bind(sig)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Forget signatures whose replay window has passed; rows deleted.
pub async fn forget_signatures(db: &Db, now_ms: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM webhook_signatures WHERE expires_at_ms < $1")
        .bind(now_ms)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}
