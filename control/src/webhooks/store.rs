//! Endpoints and deliveries, every query scoped by the caller's tenant
//! (another tenant's ids answer 404).

use axum::http::StatusCode;
use delta_http::ApiError;

use crate::db::{Db, new_id};
use crate::pagination::{Listing, Page, PageQuery, tenant_page};
use crate::state::AppState;

use super::crypto;
use super::deliver::check_host;
use super::model::*;

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::internal(e)
}

/// Register an endpoint for `tenant`: the URL's host must resolve to
/// allowed addresses now (it is checked again at every delivery).
pub async fn create(
    state: &AppState,
    tenant: &str,
    user: &str,
    mut body: NewEndpoint,
    now: i64,
) -> Result<CreatedEndpoint, ApiError> {
    validate(&mut body)?;
    check_filter(&state.db, tenant, &body).await?;
    let (_, host, port) = parse_url(&body.url)?;
    check_host(&host, port, state.config.allow_private_webhook_urls).await?;
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(state.db.pool())
            .await
            .map_err(db_err)?;
    if count >= MAX_ENDPOINTS {
        return Err(ApiError::conflict(
            "too_many_endpoints",
            format!("a tenant has at most {MAX_ENDPOINTS} webhook endpoints; delete one first"),
        ));
    }
    let id = new_id(ENDPOINT_PREFIX);
    let secret = crypto::new_secret();
    let types: Vec<&str> = body.event_types.iter().map(|t| t.as_str()).collect();
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, \
         secret_sealed, created_by, created_at_ms, agent_ids, trigger_ids) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(tenant)
    .bind(&body.url)
    .bind(&body.description)
    .bind(serde_json::to_string(&types).map_err(ApiError::internal)?)
    .bind(crypto::seal(&state.keys, &id, &secret)?)
    .bind(user)
    .bind(now)
    .bind(serde_json::to_string(&body.agent_ids).map_err(ApiError::internal)?)
    .bind(serde_json::to_string(&body.trigger_ids).map_err(ApiError::internal)?)
    .execute(state.db.pool())
    .await
    .map_err(db_err)?;
    Ok(CreatedEndpoint {
        endpoint: Endpoint {
            id,
            url: body.url,
            event_types: body.event_types,
            description: body.description,
            agent_ids: body.agent_ids,
            trigger_ids: body.trigger_ids,
            created_at_ms: now,
        },
        secret,
    })
}

/// Every id of an endpoint's filter must be the tenant's own: an agent, or
/// a schedule or inbound webhook. Another tenant's id is answered exactly
/// as one that does not exist (422), so the check reveals nothing.
async fn check_filter(db: &Db, tenant: &str, body: &NewEndpoint) -> Result<(), ApiError> {
    for id in &body.agent_ids {
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM agents WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tenant)
                .fetch_optional(db.pool())
                .await
                .map_err(db_err)?;
        if found.is_none() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_agent",
                format!("agent_ids: {id} is not an agent of this tenant"),
            ));
        }
    }
    for id in &body.trigger_ids {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT id FROM schedules WHERE id = $1 AND tenant_id = $2 \
             UNION ALL SELECT id FROM webhooks WHERE id = $1 AND tenant_id = $2",
        )
        .bind(id)
        .bind(tenant)
        .fetch_optional(db.pool())
        .await
        .map_err(db_err)?;
        if found.is_none() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_trigger",
                format!("trigger_ids: {id} is not a schedule or inbound webhook of this tenant"),
            ));
        }
    }
    Ok(())
}

/// The tenant's endpoints, oldest first.
pub async fn list(db: &Db, tenant: &str, page: &PageQuery) -> Result<Page<Endpoint>, ApiError> {
    tenant_page(
        db,
        Listing {
            columns: ENDPOINT_COLUMNS,
            table: "webhook_endpoints",
            filters: &[],
        },
        tenant,
        page,
        endpoint_from_row,
        |e| (e.created_at_ms, e.id.clone()),
    )
    .await
}

/// Delete an endpoint with its deliveries (pending ones are not sent).
pub async fn delete(db: &Db, tenant: &str, id: &str) -> Result<(), ApiError> {
    let mut tx = db.begin().await.map_err(db_err)?;
    let gone = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
    if gone != 1 {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    // Explicit as well as ON DELETE CASCADE: SQLite enforces foreign keys
    // only with the pragma on.
    sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

/// The tenant's deliveries, oldest first, optionally of one status.
pub async fn deliveries(
    db: &Db,
    tenant: &str,
    status: Option<&str>,
    page: &PageQuery,
) -> Result<Page<Delivery>, ApiError> {
    tenant_page(
        db,
        Listing {
            columns: DELIVERY_COLUMNS,
            table: "webhook_deliveries",
            filters: status.map(|s| ("status", s)).as_slice(),
        },
        tenant,
        page,
        delivery_from_row,
        |d| (d.created_at_ms, d.id.clone()),
    )
    .await
}

/// Put a dead or delivered delivery back to pending with a fresh set of
/// tries (the same message, so the same `webhook-id`).
pub async fn replay(db: &Db, tenant: &str, id: &str, now: i64) -> Result<Delivery, ApiError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at_ms = $3, \
         lease_until_ms = 0, updated_at_ms = $3 \
         WHERE id = $1 AND tenant_id = $2 AND status IN ('dead', 'delivered')",
    )
    .bind(id)
    .bind(tenant)
    .bind(now)
    .execute(db.pool())
    .await
    .map_err(db_err)?
    .rows_affected();
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    let d = row
        .as_ref()
        .map(delivery_from_row)
        .transpose()
        .map_err(db_err)?
        .ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    if done != 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "delivery_pending",
            "the delivery is still pending: it is retried on its own",
        ));
    }
    Ok(d)
}
