//! The message audit log: every attempt to send a message, sent or refused,
//! as the nodes report it.
//!
//! A node records each attempt of a run (channel, template, recipient,
//! status, the WIT error code as `reason`, tokens, the provider's id) and
//! ships them in the run's usage record (`RunUsage::message_log`). Usage
//! ingestion calls [`record_attempts`] in its transaction for records it had
//! not seen, so the log is written exactly once per run; each attempt's id
//! is `<run_id>:<index>`, which makes a repeat harmless anyway.
//!
//! `GET /v1/messages` lists the tenant's attempts newest first, filtered by
//! agent, channel, status and time; it needs `member` and `templates:read`
//! or `agents:read`.

use axum::Json;
use axum::extract::{Query, State};
use delta_http::ApiError;
use delta_node_api::RunUsage;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::pagination::{Page, PageQuery};

/// Attempts taken from one usage record at most (nodes keep 1,000).
const MAX_PER_RUN: usize = 1_000;
/// Longest string kept from a node's report, bytes.
const MAX_FIELD: usize = 256;
/// Rows per INSERT (15 parameters each, under SQLite's and PostgreSQL's
/// limits).
const ROWS_PER_INSERT: usize = 200;
const COLUMNS: &str = "id, tenant_id, agent_id, run_id, node_id, channel, template_id, \
     recipient, status, reason, tokens, provider_id, at_ms, received_at_ms";

/// One message attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageRecord {
    /// `<run_id>:<index in the run's log>`.
    pub id: String,
    /// The agent that tried.
    pub agent_id: String,
    /// Its run.
    pub run_id: String,
    /// The node that ran it.
    pub node_id: String,
    /// `email` or `sms`.
    pub channel: String,
    /// The template the guest named.
    pub template_id: String,
    /// The recipient the guest named.
    pub recipient: String,
    /// `sent`, `refused` or `failed`.
    pub status: String,
    /// The WIT send-error case (`template-not-approved`, `rate-limited`,
    /// ...); none when sent.
    pub reason: Option<String>,
    /// Budget tokens charged.
    pub tokens: i64,
    /// The provider's id for the message (when sent).
    pub provider_id: Option<String>,
    /// When the attempt ended (node clock).
    pub at_ms: i64,
}

/// Filters of `GET /v1/messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageFilter {
    /// Only this agent's attempts.
    pub agent_id: Option<String>,
    /// `email` or `sms`.
    #[param(pattern = "^(email|sms)$")]
    pub channel: Option<String>,
    /// `sent`, `refused` or `failed`.
    #[param(pattern = "^(sent|refused|failed)$")]
    pub status: Option<String>,
    /// At or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Before this time (ms since the epoch).
    pub until_ms: Option<i64>,
}

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_messages))
}

/// A node's string as stored: control characters replaced (PostgreSQL
/// refuses NUL) and clipped to [`MAX_FIELD`] bytes.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_FIELD));
    for c in s.chars() {
        let c = if c.is_control() { '\u{fffd}' } else { c };
        if out.len() + c.len_utf8() > MAX_FIELD {
            break;
        }
        out.push(c);
    }
    out
}

/// Store the message attempts of `records` (usage records seen for the
/// first time, reported by `node_id`), inside the caller's transaction.
/// Attempts already stored (same run and index) are left as they are.
pub async fn record_attempts(
    conn: &mut sqlx::AnyConnection,
    node_id: &str,
    records: &[&RunUsage],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    struct Row {
        id: String,
        tenant_id: String,
        agent_id: String,
        run_id: String,
        channel: String,
        template_id: String,
        recipient: String,
        status: String,
        reason: Option<String>,
        tokens: i64,
        provider_id: Option<String>,
        at_ms: i64,
    }
    let rows: Vec<Row> = records
        .iter()
        .flat_map(|record| {
            record
                .message_log
                .iter()
                .take(MAX_PER_RUN)
                .enumerate()
                .map(move |(index, a)| Row {
                    id: format!("{}:{index}", record.run_id),
                    tenant_id: record.tenant_id.clone(),
                    agent_id: record.agent_id.clone(),
                    run_id: record.run_id.clone(),
                    channel: clean(&a.channel),
                    template_id: clean(&a.template_id),
                    recipient: clean(&a.recipient),
                    status: clean(&a.status),
                    reason: a.reason.as_deref().map(clean),
                    tokens: i64::try_from(a.tokens).unwrap_or(i64::MAX),
                    provider_id: a.provider_id.as_deref().map(clean),
                    at_ms: a.at_ms.min(i64::MAX - 1),
                })
        })
        .collect();
    let node_id = clean(node_id);
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let values = crate::db::Backend::of(conn).values_list(chunk.len(), 14);
        let sql = format!(
            "INSERT INTO message_log ({COLUMNS}) VALUES {values} ON CONFLICT (id) DO NOTHING"
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query
                .bind(&row.id)
                .bind(&row.tenant_id)
                .bind(&row.agent_id)
                .bind(&row.run_id)
                .bind(&node_id)
                .bind(&row.channel)
                .bind(&row.template_id)
                .bind(&row.recipient)
                .bind(&row.status)
                .bind(row.reason.clone())
                .bind(row.tokens)
                .bind(row.provider_id.clone())
                .bind(row.at_ms)
                .bind(now_ms);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

fn message_from_row(row: &AnyRow) -> Result<MessageRecord, sqlx::Error> {
    Ok(MessageRecord {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        run_id: row.try_get("run_id")?,
        node_id: row.try_get("node_id")?,
        channel: row.try_get("channel")?,
        template_id: row.try_get("template_id")?,
        recipient: row.try_get("recipient")?,
        status: row.try_get("status")?,
        reason: row.try_get("reason")?,
        tokens: row.try_get("tokens")?,
        provider_id: row.try_get("provider_id")?,
        at_ms: row.try_get("at_ms")?,
    })
}

/// The tenant's message attempts, newest first.
#[utoipa::path(
    get,
    path = "/v1/messages",
    tag = "messages",
    params(PageQuery, MessageFilter),
    responses(
        (status = 200, description = "A page, newest first", body = Page<MessageRecord>),
        (status = 422, description = "Unknown channel or status"),
    ),
    security(("bearer" = []))
)]
async fn list_messages(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
    Query(filter): Query<MessageFilter>,
) -> Result<Json<Page<MessageRecord>>, ApiError> {
    principal.require_role(Role::Member)?;
    // The log is about templates and about agents: either reader may look.
    if principal.require_scope("templates:read").is_err() {
        principal.require_scope("agents:read")?;
    }
    let channel = match filter.channel.as_deref() {
        None => "",
        Some(c @ ("email" | "sms")) => c,
        Some(_) => return Err(ApiError::invalid("channel must be email or sms")),
    };
    let status = match filter.status.as_deref() {
        None => "",
        Some(s @ ("sent" | "refused" | "failed")) => s,
        Some(_) => return Err(ApiError::invalid("status must be sent, refused or failed")),
    };
    let (before_t, before_id) = page
        .cursor()?
        .map(|c| (c.t, c.id))
        // No cursor: after every row (ids are never empty, and at_ms never
        // reaches i64::MAX).
        .unwrap_or((i64::MAX, String::new()));
    let limit = page.limit();
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM message_log \
         WHERE tenant_id = $1 AND (at_ms < $2 OR (at_ms = $2 AND ($3 = '' OR id < $3))) \
         AND ($5 = '' OR agent_id = $5) AND ($6 = '' OR channel = $6) \
         AND ($7 = '' OR status = $7) AND at_ms >= $8 AND at_ms < $9 \
         ORDER BY at_ms DESC, id DESC LIMIT $4"
    ))
    .bind(&principal.tenant_id)
    .bind(before_t)
    .bind(before_id)
    .bind(i64::from(limit) + 1)
    .bind(filter.agent_id.unwrap_or_default())
    .bind(channel)
    .bind(status)
    .bind(filter.since_ms.unwrap_or(i64::MIN))
    .bind(filter.until_ms.unwrap_or(i64::MAX))
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(items, limit, |m| {
        (m.at_ms, m.id.clone())
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_strings_are_cleaned_and_clipped() {
        assert_eq!(clean("a\0b\nc"), "a\u{fffd}b\u{fffd}c");
        let long = "\u{e9}".repeat(300);
        let c = clean(&long);
        assert!(c.len() <= MAX_FIELD && long.starts_with(&c));
    }
}
