//! The audit log: who did what, in which tenant, in which request.
//!
//! Recorded actions: `user_registered`, `login`, `login_failed`,
//! `refresh_token_reuse`, `logout`, `api_key_created`, `api_key_revoked`,
//! `tenant_created`, `member_added`, `role_changed`, `member_removed`.
//!
//! How rows are written (a deliberate split):
//! - When the event is a change made in a transaction (a login's refresh
//!   token, a key, a role), its row is written by [`record_in`] *inside that
//!   transaction*: the change and its audit row commit together or not at
//!   all, so no security-relevant change exists without its trace.
//! - Events that change nothing (a failed login) are written by [`record`],
//!   best effort: a failing insert is logged with `tracing::error!` and the
//!   request answers as it would have. Failing the request would not make
//!   the event less real, and it would let a broken audit table turn every
//!   wrong password into a 500.
//!
//! Rows without a tenant (failed logins of unknown emails) are kept for
//! operators and never shown to any tenant.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use delta_http::ApiError;

use crate::db::{Db, new_id, now_ms};
use crate::pagination::{Page, PageQuery};

/// Record an event, best effort: a failed insert is logged, not returned
/// (see the module documentation for when to use [`record_in`] instead).
pub async fn record(
    db: &Db,
    tenant_id: Option<&str>,
    user_id: Option<&str>,
    action: &str,
    detail: Value,
    request_id: Option<&str>,
) {
    let result = insert(db.pool(), tenant_id, user_id, action, &detail, request_id).await;
    if let Err(e) = result {
        tracing::error!(error = %e, action, tenant_id, user_id, "writing an audit row");
    }
}

/// Record an event inside the caller's transaction, so it commits (or rolls
/// back) with the change it describes.
pub async fn record_in(
    conn: &mut sqlx::AnyConnection,
    tenant_id: Option<&str>,
    user_id: Option<&str>,
    action: &str,
    detail: Value,
    request_id: Option<&str>,
) -> Result<(), ApiError> {
    insert(conn, tenant_id, user_id, action, &detail, request_id)
        .await
        .map_err(ApiError::internal)
}

async fn insert<'e>(
    executor: impl sqlx::AnyExecutor<'e>,
    tenant_id: Option<&str>,
    user_id: Option<&str>,
    action: &str,
    detail: &Value,
    request_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (id, tenant_id, user_id, action, detail, request_id, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id("aud"))
    .bind(tenant_id)
    .bind(user_id)
    .bind(action)
    .bind(detail.to_string())
    .bind(request_id)
    .bind(now_ms())
    .execute(executor)
    .await?;
    Ok(())
}

/// One audit row as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Row id.
    pub id: String,
    /// Who acted (or, for a failed login, whose account was tried).
    pub user_id: Option<String>,
    /// What happened (`login`, `role_changed`, ...).
    pub action: String,
    /// Event-specific details.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// The request that caused it.
    pub request_id: Option<String>,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// Which entries of the audit log a page shows (all when empty).
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<String>,
    /// Only this user's.
    pub user_id: Option<String>,
    /// Only at or after this time, ms since the epoch.
    pub since_ms: Option<i64>,
    /// Only before this time, ms since the epoch.
    pub until_ms: Option<i64>,
}

/// One page of `tenant`'s audit log matching `filter`, **newest first**:
/// the cursor walks backwards in time, keyed by `(at_ms, id)`.
pub async fn list(
    db: &Db,
    tenant: &str,
    filter: &AuditFilter,
    page: &PageQuery,
) -> Result<Page<AuditEntry>, ApiError> {
    let (before_t, before_id) = page
        .cursor()?
        .map(|c| (c.t, c.id))
        // No cursor: start after every possible row. Ids are `aud_...`, and
        // at_ms can never reach i64::MAX, so ("", MAX) sorts after all rows.
        .unwrap_or((i64::MAX, String::new()));
    let limit = page.limit();
    // Only the conditions asked for, numbered after the four fixed ones
    // (a NULL parameter of unknown type is refused by PostgreSQL).
    let mut sql = String::from(
        "SELECT id, user_id, action, detail, request_id, at_ms FROM audit_log \
         WHERE tenant_id = $1 AND (at_ms, id) < ($2, $3)",
    );
    let mut n = 4;
    let mut texts = Vec::new();
    let mut times = Vec::new();
    for (column, value) in [("action", &filter.action), ("user_id", &filter.user_id)] {
        if let Some(v) = value {
            n += 1;
            sql.push_str(&format!(" AND {column} = ${n}"));
            texts.push(v.clone());
        }
    }
    for (op, value) in [(">=", filter.since_ms), ("<", filter.until_ms)] {
        if let Some(v) = value {
            n += 1;
            sql.push_str(&format!(" AND at_ms {op} ${n}"));
            times.push(v);
        }
    }
    sql.push_str(" ORDER BY at_ms DESC, id DESC LIMIT $4");
    let mut q = sqlx::query(&sql)
        .bind(tenant)
        .bind(before_t)
        .bind(before_id)
        .bind(i64::from(limit) + 1);
    for v in texts {
        q = q.bind(v);
    }
    for v in times {
        q = q.bind(v);
    }
    let rows = q.fetch_all(db.pool()).await.map_err(ApiError::internal)?;
    let entries = rows
        .iter()
        .map(|r| {
            let detail: String = r.try_get("detail")?;
            Ok(AuditEntry {
                id: r.try_get("id")?,
                user_id: r.try_get("user_id")?,
                action: r.try_get("action")?,
                // Written by this module as JSON; should a row not parse,
                // show the text rather than fail the page.
                detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
                request_id: r.try_get("request_id")?,
                at_ms: r.try_get("at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(ApiError::internal)?;
    Ok(Page::from_rows(entries, limit, |e| (e.at_ms, e.id.clone())))
}
